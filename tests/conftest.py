"""Shared fixtures: the real test cluster (session scope) and its per-test conveniences.

Tests marked `cluster` use `cluster`, a real etcd + kube-apiserver (tests/cluster). If it cannot be
built or started the tests ERROR with the processes' logs; they are never skipped.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, keep_logs, kubevirt_path

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A running control plane with the KubeVirt CRDs installed, shared by the whole session."""
    workdir = tmp_path_factory.mktemp("cluster")
    started = Cluster.start(workdir)
    try:
        yield started
    finally:
        started.stop()
        if request.session.testsfailed:
            kept = keep_logs(started, ARTIFACTS / f"cluster-{os.getpid()}")
            print(f"\ncluster logs kept in {kept}")
        shutil.rmtree(workdir / "etcd-data", ignore_errors=True)


@pytest.fixture(autouse=True)
def no_leftover_kubevirt_crs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete every KubeVirt CR a cluster test leaves behind.

    KubeVirt acts on exactly one CR: one left by a test would make every later exporter see
    several, so none is converged and the outdated aggregates are held (docs/semantics.md).
    """
    yield
    if "cluster" not in request.fixturenames:
        return
    cluster: Cluster = request.getfixturevalue("cluster")
    status, body = cluster.request("GET", "/apis/kubevirt.io/v1/kubevirts")
    assert status == 200, body
    for item in body["items"]:
        path = kubevirt_path({"kind": "KubeVirt", "metadata": item["metadata"]})
        # No virt-operator runs here to remove its finalizer.
        cluster.request("PATCH", path, {"metadata": {"finalizers": None}})
        cluster.request("DELETE", path)


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    """A fresh namespace name for one test, created in the cluster."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.ensure_namespace(name)
    return name

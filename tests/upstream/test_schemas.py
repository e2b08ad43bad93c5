"""Every object the project ships or tests with is accepted by KubeVirt's own CRD schemas.

The test cluster installs upstream's CRDs (kubevirt/kubevirt v1.7.0, printed by the oracle
binary) and `Cluster.create` writes with `fieldValidation=Strict`, so an unknown field, a value
out of range or a wrong type is refused instead of being pruned in silence.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import builders
from tests.cluster import REPO, Cluster, ClusterError, kubevirt_path
from tests.fleets import generate

pytestmark = [pytest.mark.cluster, pytest.mark.upstream]

EXAMPLES = sorted((REPO / "examples").rglob("*.yaml"))


def kubevirt_objects(path: Path) -> Iterator[dict[str, Any]]:
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if not isinstance(document, dict):
            continue
        for item in document.get("items", [document]):
            if str(item.get("apiVersion", "")).startswith("kubevirt.io/"):
                yield item


def accepted(cluster: Cluster, obj: dict[str, Any], namespace: str) -> None:
    """Create `obj` (moved into `namespace`, status included) and delete it again."""
    moved = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    stored = cluster.create(moved, finalizers=False)
    status, body = cluster.request("DELETE", kubevirt_path(stored))
    assert status in (200, 202), body


def test_the_examples_hold_only_objects_upstream_accepts(cluster: Cluster, namespace: str) -> None:
    objects = [(path, obj) for path in EXAMPLES for obj in kubevirt_objects(path)]
    assert len(objects) >= 60, [str(path) for path in EXAMPLES]
    refused = []
    for path, obj in objects:
        try:
            accepted(cluster, obj, namespace)
        except ClusterError as err:
            refused.append(f"{path.relative_to(REPO)}: {err}")
    assert not refused, "\n".join(refused)


def test_the_test_builders_make_only_objects_upstream_accepts(
    cluster: Cluster, namespace: str
) -> None:
    objects = [
        builders.vmi(),
        builders.vmi(
            "changing",
            changes=("HotVCPUChange", "HotMemoryChange", "MigrationRequired", "VolumesChange"),
            migration=builders.migration_state(),
            migrated_volumes=2,
            eviction_strategy="LiveMigrateIfPossible",
            live_migratable=False,
        ),
        builders.vm(),
        builders.vm("legacy", run_strategy=None, running=True),
        builders.vmim(),
        builders.vmim("update", workload_update=True, phase=None),
        builders.kubevirt(
            hco=True,
            update_methods=("LiveMigrate", "Evict"),
            batch_eviction_size=10,
            batch_eviction_interval="1m0s",
            eviction_strategy="LiveMigrate",
            parallel_migrations_per_cluster=5,
            reported_outdated=3,
        ),
    ]
    for fleet in generate(7, 2):
        objects.append(fleet.kubevirt())
        for case in fleet.vmis:
            objects += [case.vmi(namespace), *case.vmims(namespace)]
            vm = case.vm(namespace)
            if vm is not None:
                objects.append(vm)
    refused = []
    for obj in objects:
        try:
            accepted(cluster, obj, namespace)
        except ClusterError as err:
            refused.append(str(err))
    assert not refused, "\n".join(refused)

"""In-cluster credentials against the real kube-apiserver: a rotated ServiceAccount token is used.

In a pod the kubelet replaces the projected token file before the token expires (at 80 % of its
lifetime); an exporter that kept the token it read at start would get 401 for every request after
the old one expired. Here the API server itself issues the tokens (TokenRequest), the first one
bound to a Secret so that deleting the Secret makes the API server refuse it at once, instead of
waiting the ten minutes a projected token lives at least (tests/deploy/test_node.py waits them).
"""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio.config import incluster_config

from exporter.kube.api import ApiServer, connect
from tests.cluster import Cluster

pytestmark = pytest.mark.cluster

VMIS = "/apis/kubevirt.io/v1/virtualmachineinstances"
TIMEOUT = aiohttp.ClientTimeout(total=30)
#: How long the API server may keep answering from its token cache (10 s by default).
REVOCATION_PATIENCE = 60.0


def post(cluster: Cluster, path: str, body: dict[str, object]) -> dict[str, object]:
    status, answer = cluster.request("POST", path, body)
    assert status == 201, answer
    return answer


def request_token(
    cluster: Cluster, namespace: str, account: str, bound_to: dict[str, object] | None
) -> str:
    """A token for the ServiceAccount from the TokenRequest API (as the kubelet asks for one)."""
    spec: dict[str, object] = {"expirationSeconds": 600}
    if bound_to is not None:
        meta = bound_to["metadata"]
        assert isinstance(meta, dict)
        spec["boundObjectRef"] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "name": meta["name"],
            "uid": meta["uid"],
        }
    answer = post(
        cluster,
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    status = answer["status"]
    assert isinstance(status, dict)
    return str(status["token"])


@pytest.fixture
def reader(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A ServiceAccount in `namespace` allowed to list VMIs cluster-wide."""
    account = "reader"
    post(
        cluster,
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
    )
    role = f"kue-reader-{uuid.uuid4().hex[:8]}"
    post(
        cluster,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": [
                {
                    "apiGroups": ["kubevirt.io"],
                    "resources": ["virtualmachineinstances"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
    )
    post(
        cluster,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )
    try:
        yield account
    finally:
        for kind in ("clusterrolebindings", "clusterroles"):
            cluster.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/{kind}/{role}")


@pytest.fixture
def in_a_pod(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process looks like a pod to the in-cluster loader: the Service host and port point at
    the test API server, the token and CA files live under tmp_path (the returned token file).
    The loader re-reads the token file at most once a minute; that period is shortened to zero so
    the test need not wait a minute (the node test runs at the real period)."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    token = directory / "token"
    ca = directory / "ca.crt"
    ca.write_bytes(cluster.pki.ca_file.read_bytes())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", cluster.host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(cluster.apiserver_port))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setattr(incluster_config, "TOKEN_REFRESH_PERIOD", datetime.timedelta(0))
    return token


async def status_of(api: ApiServer) -> int:
    response = await api.get(VMIS, [("limit", "1")], request_timeout=TIMEOUT)
    try:
        return response.status
    finally:
        response.release()


def write_atomically(path: Path, text: str) -> None:
    """Replace the file's content in one step, as the kubelet's atomic writer does."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    fresh.replace(path)


async def test_in_cluster_requests_carry_the_token_file_as_it_is_now(
    cluster: Cluster, namespace: str, reader: str, in_a_pod: Path
) -> None:
    secret = post(
        cluster,
        f"/api/v1/namespaces/{namespace}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "binding"}},
    )
    first = request_token(cluster, namespace, reader, bound_to=secret)
    write_atomically(in_a_pod, first)
    async with connect(kubeconfig=None) as api:
        assert await status_of(api) == 200

        # The first token stops being valid (as an expired one does): the API server refuses it.
        status, body = cluster.request("DELETE", f"/api/v1/namespaces/{namespace}/secrets/binding")
        assert status == 200, body
        deadline = time.monotonic() + REVOCATION_PATIENCE
        while await status_of(api) != 401:
            assert time.monotonic() < deadline, "the API server kept accepting the first token"
            await asyncio.sleep(0.5)

        # The kubelet's replacement lands in the file; the next request must carry it.
        write_atomically(in_a_pod, request_token(cluster, namespace, reader, bound_to=None))
        assert await status_of(api) == 200, "the exporter kept sending the refused token"

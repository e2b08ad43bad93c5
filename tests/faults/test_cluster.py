"""The test cluster is a real Kubernetes API: versioned, RBAC-enforcing, serving our KubeVirt CRDs.

These tests talk to it through kubernetes-asyncio, the client the exporter itself uses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from tests.cluster import REPO, Cluster

pytestmark = pytest.mark.cluster

GROUP, VERSION = "kubevirt.io", "v1"


def running_vmi(namespace: str, name: str) -> dict[str, Any]:
    """A VMI as virt-controller leaves a running one: status is written with the object."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kubevirt.io/nodeName": "node-a"},
        },
        "spec": {
            "domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
            "networks": [{"name": "default", "pod": {}}],
        },
        "status": {
            "phase": "Running",
            "nodeName": "node-a",
            "launcherContainerImageVersion": "quay.io/kubevirt/virt-launcher:v1.5.0",
            "conditions": [{"type": "LiveMigratable", "status": "True"}],
        },
    }


async def api_client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)


@pytest.fixture
async def admin(cluster: Cluster) -> AsyncIterator[client.CustomObjectsApi]:
    api = await api_client(cluster.kubeconfig)
    try:
        yield client.CustomObjectsApi(api)
    finally:
        await api.close()


def test_version_endpoint_reports_the_pinned_release(cluster: Cluster) -> None:
    pinned = (REPO / "tools" / "k8s" / "VERSION").read_text().strip()
    status, body = cluster.request("GET", "/version")
    assert status == 200
    assert body["gitVersion"] == pinned
    assert f"v{body['major']}.{body['minor']}." in pinned + "."


def test_crds_have_the_names_and_subresources_of_kubevirt(cluster: Cluster) -> None:
    status, body = cluster.request("GET", "/apis/kubevirt.io/v1")
    assert status == 200
    resources = {r["name"]: r for r in body["resources"]}
    assert set(resources) == {
        "virtualmachineinstances",
        "virtualmachines",
        "virtualmachineinstancemigrations",
        "kubevirts",
        "virtualmachines/status",
        "virtualmachineinstancemigrations/status",
        "kubevirts/status",
    }
    assert resources["virtualmachineinstances"]["shortNames"] == ["vmi", "vmis"]
    assert resources["virtualmachines"]["shortNames"] == ["vm", "vms"]
    assert resources["virtualmachineinstancemigrations"]["shortNames"] == ["vmim", "vmims"]
    assert resources["kubevirts"]["shortNames"] == ["kv", "kvs"]
    assert all(resources[name]["namespaced"] for name in resources)


async def test_vmi_with_status_is_created_listed_and_its_modification_watched(
    cluster: Cluster, namespace: str, admin: client.CustomObjectsApi
) -> None:
    created = await admin.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "virtualmachineinstances", running_vmi(namespace, "vmi-a")
    )
    # No status subresource on VMIs: the status is stored as sent.
    assert created["status"]["phase"] == "Running"

    listed = await admin.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "virtualmachineinstances"
    )
    assert [item["metadata"]["name"] for item in listed["items"]] == ["vmi-a"]
    resource_version = listed["metadata"]["resourceVersion"]

    stream = await admin.list_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "virtualmachineinstances",
        watch=True,
        resource_version=resource_version,
        timeout_seconds=60,
        _preload_content=False,
    )
    patch = {"metadata": {"labels": {"kubevirt.io/outdatedLauncherImage": ""}}}
    path = f"/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/vmi-a"
    assert cluster.request("PATCH", path, patch)[0] == 200
    event = json.loads(await asyncio.wait_for(stream.content.readline(), timeout=60))
    stream.release()
    assert event["type"] == "MODIFIED"
    assert "kubevirt.io/outdatedLauncherImage" in event["object"]["metadata"]["labels"]


async def test_restricted_user_reads_vmis_only_where_a_role_allows(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    other = f"{namespace}-other"
    cluster.ensure_namespace(other)
    for ns in (namespace, other):
        cluster.create(running_vmi(ns, "vmi-r"))
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "vmi-reader", "namespace": namespace},
        "rules": [
            {
                "apiGroups": ["kubevirt.io"],
                "resources": ["virtualmachineinstances"],
                "verbs": ["get", "list", "watch"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "vmi-reader", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "vmi-reader"},
        "subjects": [
            {"kind": "User", "name": "restricted", "apiGroup": "rbac.authorization.k8s.io"}
        ],
    }
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    assert cluster.request("POST", f"{rbac}/roles", role)[0] == 201
    assert cluster.request("POST", f"{rbac}/rolebindings", binding)[0] == 201

    kubeconfig = cluster.write_kubeconfig(
        tmp_path / "restricted.kubeconfig", token=cluster.restricted_token
    )
    api = await api_client(kubeconfig)
    try:
        restricted = client.CustomObjectsApi(api)
        # RBAC changes reach the authorizer's cache asynchronously: poll with a generous bound.
        listed = await eventually_allowed(restricted, namespace)
        assert [item["metadata"]["name"] for item in listed["items"]] == ["vmi-r"]

        with pytest.raises(ApiException) as elsewhere:
            await restricted.list_namespaced_custom_object(
                GROUP, VERSION, other, "virtualmachineinstances"
            )
        assert elsewhere.value.status == 403

        with pytest.raises(ApiException) as write:
            await restricted.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, "virtualmachineinstances", "vmi-r"
            )
        assert write.value.status == 403

        with pytest.raises(ApiException) as other_kind:
            await restricted.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "virtualmachines"
            )
        assert other_kind.value.status == 403
    finally:
        await api.close()


async def eventually_allowed(api: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    last: ApiException | None = None
    for _ in range(120):
        try:
            result: dict[str, Any] = await api.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "virtualmachineinstances"
            )
            return result
        except ApiException as err:
            if err.status != 403:
                raise
            last = err
            await asyncio.sleep(0.5)
    raise AssertionError(f"the Role never took effect: {last}")

"""The list/watch loops against the real kube-apiserver: the sink converges to what it holds.

The loops run in-process into a recording model of the Fleet contract (tests/fakeapi.py), so each
test can compare the sink with the server object by object (name and resourceVersion).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exporter.kube import run_watchers
from exporter.model import RESOURCES, Resource
from exporter.settings import Settings, WatchTiming
from tests import builders
from tests.cluster import Cluster, kubevirt_path
from tests.fakeapi import RecordingMetrics, RecordingSink, eventually

pytestmark = pytest.mark.cluster

VMIS: Resource = "virtualmachineinstances"
VMS: Resource = "virtualmachines"
VMIMS: Resource = "virtualmachineinstancemigrations"
KVS: Resource = "kubevirts"
#: Convergence bound on a loaded 2-core machine shared with other jobs.
PATIENCE = 90.0
TIMING = WatchTiming(
    page_size=2,
    watch_timeout_seconds=(30, 60),
    inactivity_timeout=120.0,
    backoff_initial=0.2,
    backoff_max=2.0,
)

#: {(namespace, name): resourceVersion}
State = dict[tuple[str, str], str]


def server_state(cluster: Cluster, resource: str, namespace: str | None) -> State:
    where = f"namespaces/{namespace}/" if namespace else ""
    status, body = cluster.request("GET", f"/apis/kubevirt.io/v1/{where}{resource}")
    assert status == 200, body
    return {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
        for o in body["items"]
    }


def sink_state(sink: RecordingSink, resource: str) -> State:
    return {
        key: raw["metadata"]["resourceVersion"] for key, raw in sink.store.get(resource, {}).items()
    }


async def converged(
    cluster: Cluster,
    sink: RecordingSink,
    namespace: str,
    what: str,
    kinds: tuple[str, ...] = RESOURCES,
) -> None:
    """Every kind in the sink equals the server (KubeVirt: cluster-wide, the rest: `namespace`)."""

    def same() -> bool:
        return all(
            sink_state(sink, kind)
            == server_state(cluster, kind, None if kind == KVS else namespace)
            for kind in kinds
        )

    await eventually(same, what, patience=PATIENCE)


@contextlib.asynccontextmanager
async def watching(
    kubeconfig: Path, namespace: str, *, label_selector: str | None = None
) -> AsyncIterator[tuple[RecordingSink, RecordingMetrics]]:
    sink, metrics = RecordingSink(), RecordingMetrics()
    settings = Settings(
        kubeconfig=kubeconfig, namespaces=(namespace,), label_selector=label_selector
    )
    task = asyncio.create_task(
        run_watchers(settings=settings, fleet=sink, metrics=metrics, timing=TIMING)
    )
    try:
        yield sink, metrics
        assert not task.done(), f"run_watchers ended: {task.exception()!r}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def all_four(namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        builders.vmi(name, namespace),
        builders.vm(name, namespace),
        builders.vmim(f"{name}-migration", namespace, vmi_name=name),
        builders.kubevirt(f"kv-{namespace}-{name}", namespace),
    ]


def patch(cluster: Cluster, obj: dict[str, Any], body: dict[str, Any]) -> None:
    status, answer = cluster.request("PATCH", kubevirt_path(obj), body)
    assert status == 200, answer


def delete(cluster: Cluster, obj: dict[str, Any]) -> None:
    """Delete as with KubeVirt's controllers: the finalizers hold the object (deletionTimestamp
    set, a MODIFIED event) until they are removed (then DELETED)."""
    status, answer = cluster.request("DELETE", kubevirt_path(obj))
    assert status in (200, 202), answer
    if answer.get("metadata", {}).get("finalizers"):
        patch(cluster, obj, {"metadata": {"finalizers": None}})


async def test_all_four_kinds_are_listed_and_their_changes_converge(
    cluster: Cluster, namespace: str
) -> None:
    listed = [obj for i in range(3) for obj in all_four(namespace, f"pre-{i}")]
    for obj in listed:
        cluster.create(obj)
    async with watching(cluster.kubeconfig, namespace) as (sink, metrics):
        await converged(cluster, sink, namespace, "the initial (paginated) lists")
        assert sink.synced == set(RESOURCES)
        assert all(metrics.lists[(kind, "success")] == 1 for kind in RESOURCES)

        created = all_four(namespace, "new")
        for obj in created:
            cluster.create(obj)
        for obj in listed[:4]:
            patch(cluster, obj, {"metadata": {"labels": {"touched": "yes"}}})
        for obj in listed[4:8]:
            delete(cluster, obj)
        await converged(cluster, sink, namespace, "creations, modifications and deletions")
        assert sink.relists == {kind: 1 for kind in RESOURCES}, "no relist was needed"
        for kind in (VMIS, VMS, VMIMS):
            assert metrics.events[(kind, "ADDED")] >= 1
            assert metrics.events[(kind, "MODIFIED")] >= 1
            assert metrics.events[(kind, "DELETED")] >= 1
        touched = sink.store[VMIS][(namespace, "pre-0")]
        assert touched["metadata"]["labels"]["touched"] == "yes"


async def test_watches_resume_after_an_apiserver_restart_and_converge(
    cluster: Cluster, namespace: str
) -> None:
    before = all_four(namespace, "before")
    for obj in before:
        cluster.create(obj)
    async with watching(cluster.kubeconfig, namespace) as (sink, metrics):
        await converged(cluster, sink, namespace, "the initial lists")
        await asyncio.to_thread(cluster.restart_apiserver)
        after = all_four(namespace, "after")
        for obj in after:
            cluster.create(obj)
        delete(cluster, before[0])
        patch(cluster, before[1], {"spec": {"runStrategy": "Halted"}})
        await converged(cluster, sink, namespace, "changes after the restart")
        assert (namespace, "before") not in sink.store[VMIS]
        assert sink.store[VMS][(namespace, "before")]["spec"]["runStrategy"] == "Halted"
        # Convergence can come from the relist alone; the new watch may open a moment later on a
        # loaded machine, so wait for it rather than expect it at the same instant.
        await eventually(
            lambda: all(metrics.watches[(kind, "success")] >= 2 for kind in RESOURCES),
            "every kind watched again after the restart",
            patience=PATIENCE,
        )


async def test_forbidden_kinds_are_reported_and_recover_when_a_role_allows_them(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    for obj in all_four(namespace, "guarded"):
        cluster.create(obj)
    kubeconfig = cluster.write_kubeconfig(
        tmp_path / "restricted.kubeconfig", token=cluster.restricted_token
    )
    async with watching(kubeconfig, namespace) as (sink, metrics):
        await eventually(
            lambda: all(metrics.lists[(kind, "forbidden")] >= 1 for kind in RESOURCES),
            "every kind refused",
            patience=PATIENCE,
        )
        problem = sink.problem(VMIS)
        assert problem is not None
        assert problem.startswith("forbidden: virtualmachineinstances.kubevirt.io is forbidden")
        assert 'User "restricted"' in problem and namespace in problem
        assert not sink.synced

        # A Role in the namespace lets the namespaced kinds through; KubeVirt stays refused
        # (it is read cluster-wide and nothing grants that).
        grant_namespaced_reads(cluster, namespace)
        await eventually(
            lambda: sink.synced == {VMIS, VMS, VMIMS}, "namespaced kinds listed", patience=PATIENCE
        )
        await converged(cluster, sink, namespace, "namespaced kinds", kinds=(VMIS, VMS, VMIMS))
        assert sink.problem(VMIS) is None
        kubevirt_problem = sink.problem(KVS)
        assert kubevirt_problem is not None and kubevirt_problem.startswith("forbidden: ")
        assert KVS not in sink.synced


def grant_namespaced_reads(cluster: Cluster, namespace: str) -> None:
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "exporter-reader", "namespace": namespace},
        "rules": [
            {
                "apiGroups": ["kubevirt.io"],
                "resources": [VMIS, VMS, VMIMS],
                "verbs": ["get", "list", "watch"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "exporter-reader", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "exporter-reader",
        },
        "subjects": [
            {"kind": "User", "name": "restricted", "apiGroup": "rbac.authorization.k8s.io"}
        ],
    }
    assert cluster.request("POST", f"{rbac}/roles", role)[0] == 201
    assert cluster.request("POST", f"{rbac}/rolebindings", binding)[0] == 201


async def test_label_selector_limits_vmis_on_the_server_side(
    cluster: Cluster, namespace: str
) -> None:
    cluster.create(builders.vmi("gold", namespace, labels={"tier": "gold"}))
    cluster.create(builders.vmi("bronze", namespace, labels={"tier": "bronze"}))
    cluster.create(builders.vm("bronze", namespace))
    async with watching(cluster.kubeconfig, namespace, label_selector="tier=gold") as (sink, _):
        await eventually(lambda: VMIS in sink.synced, "VMIs listed", patience=PATIENCE)
        assert set(sink.store[VMIS]) == {(namespace, "gold")}
        cluster.create(builders.vmi("gold-2", namespace, labels={"tier": "gold"}))
        cluster.create(builders.vmi("bronze-2", namespace, labels={"tier": "bronze"}))
        await eventually(
            lambda: (namespace, "gold-2") in sink.store[VMIS], "gold-2 watched", patience=PATIENCE
        )
        assert (namespace, "bronze-2") not in sink.store[VMIS]
        await eventually(lambda: VMS in sink.synced, "VMs listed", patience=PATIENCE)
        assert (namespace, "bronze") in sink.store[VMS], "VMs are not filtered by the selector"


async def test_a_quiet_watch_gets_bookmarks_and_resumes_without_relisting(
    cluster: Cluster, namespace: str
) -> None:
    cluster.create(builders.vmi("quiet", namespace))
    short = WatchTiming(**{**TIMING.__dict__, "watch_timeout_seconds": (4, 4)})
    sink, metrics = RecordingSink(), RecordingMetrics()
    settings = Settings(kubeconfig=cluster.kubeconfig, namespaces=(namespace,))
    task = asyncio.create_task(
        run_watchers(settings=settings, fleet=sink, metrics=metrics, timing=short)
    )
    try:
        await eventually(
            lambda: (
                metrics.events[(VMIS, "BOOKMARK")] >= 1 and metrics.watches[(VMIS, "success")] >= 3
            ),
            "bookmarks on a quiet kind, and watches that end and resume",
            patience=PATIENCE,
        )
        assert sink.relists[VMIS] == 1
        assert metrics.watches[(VMIS, "gone")] == 0
        assert set(sink.store[VMIS]) == {(namespace, "quiet")}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

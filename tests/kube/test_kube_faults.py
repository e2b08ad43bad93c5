"""The list/watch loops against a fault-injecting fake API server (tests/fakeapi.py): no cluster.

The sink here is a recording model of the Fleet contract (relist REPLACES a kind, apply
upserts/deletes by namespace/name and records whatever it is given, malformed or not).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exporter import kube
from exporter import metrics as families
from exporter.fleet import Fleet
from exporter.kube import KubeError, list_all, run_watchers
from exporter.kube.api import targets_for
from exporter.kube.errors import Backoff
from exporter.model import RESOURCES, Resource
from exporter.objects import Scope
from exporter.selfmetrics import SelfMetrics
from exporter.settings import Settings, WatchTiming
from tests import builders
from tests.fakeapi import (
    FakeApi,
    Fault,
    RecordingMetrics,
    RecordingSink,
    RecordingSleep,
    eventually,
)

VMIS: Resource = "virtualmachineinstances"
VMS: Resource = "virtualmachines"
KVS: Resource = "kubevirts"
VMIMS: Resource = "virtualmachineinstancemigrations"

FAST = WatchTiming(
    page_size=2,
    slice_size=1,
    watch_timeout_seconds=(60, 60),
    inactivity_timeout=30.0,
    backoff_initial=0.01,
    backoff_max=0.05,
    healthy_after=60.0,
    connect_timeout=2.0,
)


def vmi(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "status": {"phase": "Running", "nodeName": "node-a"},
    }


def vm(name: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"runStrategy": "Always"},
    }


def kubevirt(name: str = "kubevirt", namespace: str = "kubevirt") -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": name, "namespace": namespace},
        "status": {"phase": "Deployed"},
    }


@dataclass(frozen=True)
class Scoped:
    """The settings kube reads (exporter.settings.Settings has the same fields)."""

    kubeconfig: Path | None
    namespaces: tuple[str, ...] = ()
    label_selector: str | None = None


@dataclass
class Harness:
    api: FakeApi
    sink: RecordingSink
    metrics: RecordingMetrics
    sleep: RecordingSleep

    def requests(self, verb: str, resource: str = VMIS) -> list[Mapping[str, str]]:
        return [r.query for r in self.api.requests if r.verb == verb and r.resource == resource]


@contextlib.asynccontextmanager
async def watching(
    api: FakeApi,
    tmp_path: Path,
    *,
    timing: WatchTiming = FAST,
    namespaces: tuple[str, ...] = (),
    label_selector: str | None = None,
    sink: Any = None,
    metrics: Any = None,
) -> AsyncIterator[Harness]:
    harness = Harness(api, sink or RecordingSink(), metrics or RecordingMetrics(), RecordingSleep())
    settings = Scoped(api.kubeconfig(tmp_path / "kubeconfig"), namespaces, label_selector)
    task = asyncio.create_task(
        run_watchers(
            settings=settings,
            fleet=harness.sink,
            metrics=harness.metrics,
            timing=timing,
            sleep=harness.sleep,
        )
    )
    try:
        yield harness
        assert not task.done(), f"run_watchers ended: {task.exception()!r}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    async with FakeApi() as fake:
        yield fake


def all_synced(h: Harness) -> bool:
    return h.sink.synced >= {VMIS, VMS, KVS, "virtualmachineinstancemigrations"}


# -- lists and watches ------------------------------------------------------------------------


async def test_paginated_list_fills_the_sink_then_the_watch_resumes_from_its_version(
    api: FakeApi, tmp_path: Path
) -> None:
    for i in range(5):
        api.put(VMIS, vmi(f"vmi-{i}"))
    list_version = str(api.version)
    async with watching(api, tmp_path) as h:
        await eventually(lambda: all_synced(h), "every kind listed")
        assert h.sink.names(VMIS) == {f"default/vmi-{i}" for i in range(5)}
        lists = h.requests("list")
        assert [q.get("limit") for q in lists] == ["2", "2", "2"]
        assert [q.get("continue", "") for q in lists][1:] == [
            f"{list_version}:2",
            f"{list_version}:4",
        ]
        await eventually(lambda: api.watching(VMIS) == 1, "the VMI watch is open")
        watch = h.requests("watch")[0]
        assert watch["resourceVersion"] == list_version
        assert watch["allowWatchBookmarks"] == "true"
        assert 60 <= int(watch["timeoutSeconds"]) <= 60
        assert all(r.authorization == "Bearer fake-token" for r in api.requests)

        api.put(VMIS, vmi("vmi-new"))
        changed = vmi("vmi-0")
        changed["status"]["phase"] = "Succeeded"
        api.put(VMIS, changed)
        api.delete(VMIS, "default", "vmi-1")
        await eventually(lambda: "default/vmi-1" not in h.sink.names(VMIS), "vmi-1 deleted")
        assert "default/vmi-new" in h.sink.names(VMIS)
        assert h.sink.store[VMIS][("default", "vmi-0")]["status"]["phase"] == "Succeeded"
        assert h.metrics.events[(VMIS, "ADDED")] == 1
        assert h.metrics.events[(VMIS, "MODIFIED")] == 1
        assert h.metrics.events[(VMIS, "DELETED")] == 1
        assert h.metrics.lists[(VMIS, "success")] == 1
        assert h.sink.relists[VMIS] == 1


async def test_error_410_mid_watch_relists_and_drops_objects_deleted_in_the_gap(
    api: FakeApi, tmp_path: Path
) -> None:
    for name in ("keep", "gone-a", "gone-b"):
        api.put(VMIS, vmi(name))
    async with watching(api, tmp_path) as h:
        await eventually(lambda: api.watching(VMIS) == 1, "the VMI watch is open")
        # Deletions whose events never reach the watch, then the history is compacted away.
        api.delete(VMIS, "default", "gone-a", quietly=True)
        api.delete(VMIS, "default", "gone-b", quietly=True)
        api.put(VMIS, vmi("born-in-gap"), quietly=True)
        api.compact()
        api.expire(VMIS)
        await eventually(lambda: h.sink.relists[VMIS] == 2, "a relist after 410")
        assert h.sink.names(VMIS) == {"default/keep", "default/born-in-gap"}
        assert not any(t == "DELETED" for _, t, _ in h.sink.applied)
        assert h.metrics.watches[(VMIS, "gone")] == 1
        assert h.metrics.events[(VMIS, "ERROR")] == 1
        # After the relist the watch resumes from the new list's version and still works.
        await eventually(lambda: api.watching(VMIS) == 1, "the VMI watch is open again")
        assert h.requests("watch")[-1]["resourceVersion"] == str(api.version)
        api.put(VMIS, vmi("after"))
        await eventually(lambda: "default/after" in h.sink.names(VMIS), "watch after relist")


async def test_http_410_on_watch_start_relists(api: FakeApi, tmp_path: Path) -> None:
    api.put(VMIS, vmi("a"))
    api.fail(Fault("watch", VMIS, 410, "too old resource version"))
    async with watching(api, tmp_path) as h:
        await eventually(lambda: h.sink.relists[VMIS] == 2, "a relist after HTTP 410")
        assert h.metrics.watches[(VMIS, "gone")] == 1
        await eventually(lambda: api.watching(VMIS) == 1, "the VMI watch is open")
        assert h.sink.names(VMIS) == {"default/a"}


async def test_watch_error_event_other_than_410_resumes_without_relisting(
    api: FakeApi, tmp_path: Path
) -> None:
    async with watching(api, tmp_path) as h:
        await eventually(lambda: api.watching(VMIS) == 1, "the VMI watch is open")
        api.put(VMIS, vmi("a"))
        await eventually(lambda: "default/a" in h.sink.names(VMIS), "a seen")
        version = str(api.version)
        api.emit(VMIS, "ERROR", {"kind": "Status", "code": 500, "message": "etcd hiccup"})
        await eventually(lambda: len(h.requests("watch")) == 2, "a second watch request")
        assert h.requests("watch")[1]["resourceVersion"] == version
        assert h.sink.relists[VMIS] == 1
        assert h.metrics.watches[(VMIS, "error")] == 1


@pytest.mark.parametrize("drop", ["connection aborted", "clean end"])
async def test_stream_cut_mid_line_resumes_from_the_last_version_and_converges(
    api: FakeApi, tmp_path: Path, drop: str
) -> None:
    async with watching(api, tmp_path) as h:
        await eventually(lambda: api.watching(VMIS) == 1, "the VMI watch is open")
        api.put(VMIS, vmi("before"))
        await eventually(lambda: "default/before" in h.sink.names(VMIS), "before seen")
        resume_from = str(api.version)
        # The next change is stored, but its event arrives truncated and the stream ends.
        stored = api.put(VMIS, vmi("torn"), quietly=True)
        half = b'{"type":"ADDED","object":{"metadata":{"name":"torn","names'
        api.cut(VMIS, half, abort=drop == "connection aborted")
        api.history.append((api.version, VMIS, "ADDED", stored))
        await eventually(lambda: "default/torn" in h.sink.names(VMIS), "torn object after resume")
        assert h.requests("watch")[1]["resourceVersion"] == resume_from
        assert h.metrics.watches[(VMIS, "error")] >= 1
        assert h.sink.relists[VMIS] == 1
        assert all(isinstance(raw, dict) for _, _, raw in h.sink.applied)


async def test_malformed_objects_reach_the_sink_and_the_watch_goes_on(
    api: FakeApi, tmp_path: Path
) -> None:
    async with watching(api, tmp_path) as h:
        await eventually(lambda: api.watching(VMIS) == 1, "the VMI watch is open")
        status_not_a_map = vmi("bad-status")
        status_not_a_map["status"] = "Running"
        status_not_a_map["metadata"]["resourceVersion"] = "5000"
        nameless = {"metadata": {"namespace": "default", "resourceVersion": "5001"}}
        meta_not_a_map = {"metadata": "oops", "status": {"phase": 3}}
        for raw in (status_not_a_map, nameless, meta_not_a_map):
            api.emit(VMIS, "MODIFIED", raw)
        api.emit(VMIS, "NOT-A-TYPE", {"metadata": {}})
        api.emit(VMIS, "ADDED", ["not", "an", "object"])
        api.put(VMIS, vmi("good"))
        await eventually(lambda: "default/good" in h.sink.names(VMIS), "good after bad ones")
        applied = [raw for _, _, raw in h.sink.applied]
        assert applied[:3] == [status_not_a_map, nameless, meta_not_a_map]
        assert h.metrics.events[(VMIS, "MODIFIED")] == 3
        assert len(h.requests("watch")) == 1, "malformed objects must not break the stream"
        # The watch resumes from the last version any event carried.
        api.end_watches(VMIS)
        await eventually(lambda: len(h.requests("watch")) == 2, "resumed")
        assert h.requests("watch")[1]["resourceVersion"] == str(api.version)


async def test_bookmarks_advance_the_resume_version(api: FakeApi, tmp_path: Path) -> None:
    async with watching(api, tmp_path) as h:
        await eventually(lambda: api.watching(VMIS) == 1, "the VMI watch is open")
        first = h.requests("watch")[0]["resourceVersion"]
        for i in range(3):  # other kinds move the version on
            api.put(VMS, vm(f"vm-{i}"))
        api.bookmark(VMIS)
        bookmarked = str(api.version)
        assert bookmarked != first
        await eventually(lambda: h.metrics.events[(VMIS, "BOOKMARK")] == 1, "bookmark seen")
        api.end_watches(VMIS)
        await eventually(lambda: len(h.requests("watch")) == 2, "resumed")
        assert h.requests("watch")[1]["resourceVersion"] == bookmarked
        assert not any(r == VMIS for r, _, _ in h.sink.applied), "a bookmark is not an object"


async def test_inactivity_watchdog_reconnects_a_silent_watch(api: FakeApi, tmp_path: Path) -> None:
    timing = WatchTiming(**{**FAST.__dict__, "inactivity_timeout": 0.3})
    async with watching(api, tmp_path, timing=timing) as h:
        await eventually(lambda: api.watching(VMIS) == 1, "the VMI watch is open")
        api.stall(VMIS)
        api.put(VMIS, vmi("while-silent"))
        await eventually(lambda: "default/while-silent" in h.sink.names(VMIS), "seen after resume")
        assert len(h.requests("watch")) >= 2
        assert h.metrics.watches[(VMIS, "error")] >= 1
        assert h.sink.relists[VMIS] == 1


class RecordingLog:
    """Stands in for exporter.kube's structlog loggers: (level, event, key-values) of every line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def emit(event: str, **values: Any) -> None:
            self.lines.append((level, event, values))

        return emit


async def test_one_log_line_per_relist_and_none_per_event(
    api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = RecordingLog()
    for module in (kube.api, kube.listing, kube.watching):
        monkeypatch.setattr(module, "log", recorded)
    for i in range(5):
        api.put(VMIS, vmi(f"vmi-{i}"))
    async with watching(api, tmp_path) as h:
        await eventually(lambda: api.watching(VMIS) == 1, "the VMI watch is open")
        for i in range(20):
            api.put(VMIS, vmi(f"event-{i}"))
        await eventually(lambda: len(h.sink.names(VMIS)) == 25, "every event applied")
    relisted = [values for _, event, values in recorded.lines if event == "watch.relisted"]
    assert sorted(v["resource"] for v in relisted) == sorted(RESOURCES)
    vmi_line = next(v for v in relisted if v["resource"] == VMIS)
    assert vmi_line["objects"] == 5 and vmi_line["duration"] >= 0
    assert [line for line in recorded.lines if line[1] != "watch.relisted"] == []


async def test_relist_pages_reach_the_sink_in_slices_with_the_loop_running_between(
    api: FakeApi, tmp_path: Path
) -> None:
    for i in range(12):
        api.put(VMIS, vmi(f"vmi-{i:02d}"))
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticks_at_slice: list[int] = []

    class SlicedSink(RecordingSink):
        def relist_page(self, resource: Resource, raws: Sequence[Mapping[str, Any]]) -> None:
            if resource == VMIS:
                ticks_at_slice.append(ticks)
                assert len(raws) <= 3
            super().relist_page(resource, raws)

    sink = SlicedSink()
    beating = asyncio.create_task(heartbeat())
    timing = WatchTiming(**{**FAST.__dict__, "page_size": 6, "slice_size": 3})
    try:
        async with watching(api, tmp_path, timing=timing, sink=sink):
            await eventually(lambda: VMIS in sink.synced, "VMIs listed")
    finally:
        beating.cancel()
    assert len(ticks_at_slice) == 4
    steps = [b - a for a, b in itertools.pairwise(ticks_at_slice)]
    assert all(step >= 1 for step in steps), f"the loop stalled between slices: {steps}"


# -- failures and their reporting -------------------------------------------------------------


async def test_forbidden_list_sets_the_problem_counts_it_and_clears_after_recovery(
    api: FakeApi, tmp_path: Path
) -> None:
    api.put(VMS, vm("vm-a"))
    message = 'virtualmachines.kubevirt.io is forbidden: User "x" cannot list resource'
    api.fail(Fault("list", VMS, 403, message, times=3))
    async with watching(api, tmp_path) as h:
        await eventually(lambda: VMS in h.sink.synced, "virtualmachines listed at last")
        assert h.sink.problems[VMS][0] == f"forbidden: {message}"
        assert h.sink.problem(VMS) is None
        assert h.metrics.lists[(VMS, "forbidden")] == 3
        assert h.metrics.lists[(VMS, "success")] == 1
        assert h.sink.names(VMS) == {"default/vm-a"}
        assert len(h.sleep.delays) >= 3
        assert all(0 <= d <= FAST.backoff_max for d in h.sleep.delays)


async def test_forbidden_watch_keeps_the_listed_objects_and_clears_after_recovery(
    api: FakeApi, tmp_path: Path
) -> None:
    api.put(VMS, vm("vm-a"))
    api.fail(Fault("watch", VMS, 403, "cannot watch virtualmachines", times=2))
    async with watching(api, tmp_path) as h:
        await eventually(lambda: api.watching(VMS) == 1, "the VM watch open after all")
        assert h.sink.problems[VMS] == ["forbidden: cannot watch virtualmachines", None]
        assert h.metrics.watches[(VMS, "forbidden")] == 2
        assert h.sink.names(VMS) == {"default/vm-a"}
        assert h.sink.relists[VMS] == 1


async def test_missing_crd_is_reported_as_not_found_and_retried(
    api: FakeApi, tmp_path: Path
) -> None:
    api.fail(Fault("list", KVS, 404, "the server could not find the requested resource", times=2))
    async with watching(api, tmp_path) as h:
        await eventually(lambda: KVS in h.sink.synced, "kubevirts listed at last")
        first = h.sink.problems[KVS][0]
        assert first is not None and first.startswith("not found: ")
        assert "kubevirts" in first and "KubeVirt installed" in first
        assert h.metrics.lists[(KVS, "not_found")] == 2
        assert h.sink.problem(KVS) is None


async def test_429_waits_for_retry_after(api: FakeApi, tmp_path: Path) -> None:
    api.fail(Fault("list", VMIS, 429, "too many requests", headers={"Retry-After": "7"}))
    async with watching(api, tmp_path) as h:
        await eventually(lambda: VMIS in h.sink.synced, "VMIs listed after the 429")
        assert 7.0 in h.sleep.delays
        assert h.metrics.lists[(VMIS, "error")] == 1


async def test_expired_continue_token_restarts_the_list_from_the_first_page(
    api: FakeApi, tmp_path: Path
) -> None:
    for i in range(5):
        api.put(VMIS, vmi(f"vmi-{i}"))
    api.fail(Fault("list", VMIS, 410, "The provided continue parameter is too old", continued=True))
    async with watching(api, tmp_path) as h:
        await eventually(lambda: VMIS in h.sink.synced, "VMIs listed")
        starts = [q for q in h.requests("list") if "continue" not in q]
        assert len(starts) == 2
        assert h.metrics.lists[(VMIS, "gone")] == 1
        assert h.sink.names(VMIS) == {f"default/vmi-{i}" for i in range(5)}


async def test_unreachable_api_server_is_an_error_retried_for_ever(tmp_path: Path) -> None:
    async with FakeApi() as api:
        pass  # started and stopped: its port now refuses connections
    sink, metrics = RecordingSink(), RecordingMetrics()
    async with watching(api, tmp_path, sink=sink, metrics=metrics):
        await eventually(lambda: metrics.lists[(VMIS, "error")] >= 3, "three failed lists")
        problem = sink.problem(VMIS)
        assert problem is not None and problem.startswith(
            "error: cannot read virtualmachineinstances"
        )
        assert not sink.synced


# -- scope ------------------------------------------------------------------------------------


async def test_namespaces_are_watched_separately_and_a_relist_keeps_every_namespace(
    api: FakeApi, tmp_path: Path
) -> None:
    for ns in ("a", "b", "c"):
        api.put(VMIS, vmi(f"vmi-{ns}", ns))
    api.put(KVS, kubevirt())
    async with watching(api, tmp_path, namespaces=("b", "a")) as h:
        await eventually(lambda: api.watching(VMIS) == 2, "one VMI watch per namespace")
        assert h.sink.names(VMIS) == {"a/vmi-a", "b/vmi-b"}
        assert {r.namespace for r in api.requests if r.resource == VMIS} == {"a", "b"}
        assert {r.namespace for r in api.requests if r.resource == KVS} == {None}
        assert h.sink.names(KVS) == {"kubevirt/kubevirt"}
        assert h.sink.relists[VMIS] == 1, "one relist covers both namespaces"

        api.put(VMIS, vmi("vmi-b2", "b"))
        await eventually(lambda: "b/vmi-b2" in h.sink.names(VMIS), "b's watch delivers")
        api.delete(VMIS, "a", "vmi-a", quietly=True)
        api.compact()
        api.expire(VMIS, "a")
        await eventually(lambda: h.sink.relists[VMIS] == 2, "relist after a's 410")
        assert h.sink.names(VMIS) == {"b/vmi-b", "b/vmi-b2"}
        await eventually(lambda: api.watching(VMIS) == 2, "both watches open again")
        api.put(VMIS, vmi("vmi-a2", "a"))
        api.put(VMIS, vmi("vmi-c2", "c"))
        await eventually(lambda: "a/vmi-a2" in h.sink.names(VMIS), "a's new watch delivers")
        assert "c/vmi-c2" not in h.sink.names(VMIS)


async def test_kind_is_listed_only_once_every_namespace_is_and_the_problem_names_it(
    api: FakeApi, tmp_path: Path
) -> None:
    api.put(VMS, vm("vm-b", "b"))
    message = 'virtualmachines.kubevirt.io is forbidden: cannot list in the namespace "a"'
    api.fail(Fault("list", VMS, 403, message, times=2, namespace="a"))
    async with watching(api, tmp_path, namespaces=("a", "b")) as h:
        await eventually(lambda: VMS in h.sink.synced, "VMs listed at last")
        assert h.sink.problems[VMS] == [f"forbidden: {message}", None]
        assert h.sink.relists[VMS] == 1
        assert h.sink.names(VMS) == {"b/vm-b"}


async def test_label_selector_is_sent_for_vmis_only(api: FakeApi, tmp_path: Path) -> None:
    api.put(VMIS, vmi("picked", tier="gold"))
    api.put(VMIS, vmi("skipped", tier="bronze"))
    async with watching(api, tmp_path, label_selector="tier=gold") as h:
        await eventually(lambda: all_synced(h) and api.watching(VMIS) == 1, "synced")
        for request in api.requests:
            expected = "tier=gold" if request.resource == VMIS else None
            assert request.query.get("labelSelector") == expected, request
        assert h.sink.names(VMIS) == {"default/picked"}


def test_targets_follow_the_scope_kubevirt_is_always_cluster_wide() -> None:
    scoped = Scoped(None, ("b", "a", "b"), "x=y")
    assert [t.path for t in targets_for(VMIS, scoped)] == [
        "/apis/kubevirt.io/v1/namespaces/a/virtualmachineinstances",
        "/apis/kubevirt.io/v1/namespaces/b/virtualmachineinstances",
    ]
    assert [t.label_selector for t in targets_for(VMIS, scoped)] == ["x=y", "x=y"]
    assert [t.label_selector for t in targets_for(VMS, scoped)] == [None, None]
    assert [t.path for t in targets_for(KVS, scoped)] == ["/apis/kubevirt.io/v1/kubevirts"]
    everywhere = Scoped(None)
    assert [t.path for t in targets_for(VMS, everywhere)] == [
        "/apis/kubevirt.io/v1/virtualmachines"
    ]


# -- backoff ----------------------------------------------------------------------------------


def test_backoff_bound_doubles_from_initial_to_the_cap_and_resets() -> None:
    highest = Backoff(0.8, 30.0, rng=_Highest())
    assert [highest.next_delay() for _ in range(8)] == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
    highest.reset()
    assert highest.next_delay() == 0.8
    jittered = Backoff(0.8, 30.0, rng=random.Random(7))
    delays = [jittered.next_delay() for _ in range(200)]
    assert all(0.0 <= d <= 30.0 for d in delays)
    assert len(set(delays)) == len(delays), "full jitter: no two delays alike"


class _Highest(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


# -- one-shot list for report/plan ------------------------------------------------------------


async def test_list_all_reads_every_kind_in_scope_and_reports_progress(
    api: FakeApi, tmp_path: Path
) -> None:
    for i in range(3):
        api.put(VMIS, vmi(f"vmi-{i}", "a"))
    api.put(VMIS, vmi("elsewhere", "z"))
    api.put(VMS, vm("vm-a", "a"))
    api.put(KVS, kubevirt())
    progress: list[tuple[str, int]] = []
    listed = await list_all(
        settings=Scoped(api.kubeconfig(tmp_path / "kc"), ("a",)),
        progress=lambda resource, n: progress.append((resource, n)),
        timing=FAST,
    )
    assert [o["metadata"]["name"] for o in listed[VMIS]] == ["vmi-0", "vmi-1", "vmi-2"]
    assert [o["metadata"]["name"] for o in listed[VMS]] == ["vm-a"]
    assert [o["metadata"]["name"] for o in listed[KVS]] == ["kubevirt"]
    assert listed["virtualmachineinstancemigrations"] == []
    assert (VMIS, 2) in progress and (VMIS, 3) in progress


async def test_list_all_raises_naming_the_kind_and_the_refusal(
    api: FakeApi, tmp_path: Path
) -> None:
    api.fail(Fault("list", VMS, 403, "virtualmachines is forbidden: User x"))
    with pytest.raises(KubeError, match="virtualmachines: forbidden: virtualmachines is forbidden"):
        await list_all(settings=Scoped(api.kubeconfig(tmp_path / "kc")), timing=FAST)


async def test_unreadable_kubeconfig_is_a_kube_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.kubeconfig"
    with pytest.raises(KubeError, match=str(missing)):
        await list_all(settings=Scoped(missing))


# -- with the real Fleet and SelfMetrics ------------------------------------------------------


async def test_the_fleet_follows_relists_problems_and_malformed_events(
    api: FakeApi, tmp_path: Path
) -> None:
    for name in ("vmi-1", "vmi-2"):
        api.put(VMIS, builders.vmi(name))
        api.put(VMS, builders.vm(name))
    api.put(KVS, builders.kubevirt())
    refusal = api.fail(Fault("list", VMIMS, 403, "cannot list migrations", times=10**6))
    metrics = SelfMetrics()
    fleet = Fleet(scope=Scope(), metrics=metrics)
    settings = Settings(kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"))
    task = asyncio.create_task(
        run_watchers(
            settings=settings, fleet=fleet, metrics=metrics, timing=FAST, sleep=RecordingSleep()
        )
    )
    try:
        expected = [f"{VMIMS}: not listed yet (forbidden: cannot list migrations)"]
        await eventually(lambda: fleet.missing() == expected, "only migrations missing, named")
        refusal.times = 0
        await eventually(lambda: fleet.missing() == [], "every kind listed")
        assert {v.name for v in fleet.views()} == {"vmi-1", "vmi-2"}
        assert metrics.value(families.EXPORTER_LIST, (VMIMS, "forbidden")) >= 1

        await eventually(lambda: api.watching(VMIS) == 1, "the VMI watch is open")
        broken = builders.vmi("vmi-1")
        broken["status"] = "Running"
        api.emit(VMIS, "MODIFIED", broken)
        await eventually(
            lambda: metrics.value(families.EXPORTER_MALFORMED, (VMIS,)) == 1, "malformed counted"
        )
        assert {v.name for v in fleet.views()} == {"vmi-1", "vmi-2"}, "known record kept"

        api.delete(VMIS, "default", "vmi-2", quietly=True)
        api.compact()
        api.expire(VMIS)
        await eventually(lambda: {v.name for v in fleet.views()} == {"vmi-1"}, "relist drops")
        assert metrics.value(families.EXPORTER_WATCH, (VMIS, "gone")) == 1
        assert metrics.value(families.EXPORTER_LIST, (VMIS, "success")) == 2
        assert metrics.value(families.EXPORTER_WATCH_EVENTS, (VMIS, "ERROR")) == 1
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

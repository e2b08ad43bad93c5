"""The exporter keeps telling the truth when the real control plane misbehaves.

Each test breaks something real (the API server killed, etcd compacted under a disconnected
watcher, a flood of writes, SIGTERM during scrapes) and then checks that `/metrics` equals what the
API server holds: every VMI exactly once, no deleted VMI left, no stale label set.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests import builders
from tests.cluster import Cluster, kubevirt_path
from tests.exporter_process import ExporterProcess, eventually, select

pytestmark = pytest.mark.cluster

OUTDATED_LABEL = "kubevirt.io/outdatedLauncherImage"
VMIS = "virtualmachineinstances"

#: What /metrics must say of one VMI: (node, outdated value).
Truth = dict[str, tuple[str, float]]


def make_vmi(namespace: str, index: int, *, outdated: bool = False) -> dict[str, Any]:
    """A standalone running VMI without finalizers (nothing here would remove them)."""
    vmi = builders.vmi(
        f"vmi-{index:04d}",
        namespace,
        node=f"node-{index % 3}",
        outdated_label=outdated,
        owner_vm=None,
    )
    vmi["metadata"].pop("finalizers", None)
    return vmi


def truth(cluster: Cluster, namespace: str) -> Truth:
    """Node and outdated verdict of every VMI the API server holds in `namespace`."""
    status, body = cluster.request("GET", f"/apis/kubevirt.io/v1/namespaces/{namespace}/{VMIS}")
    assert status == 200, body
    result: Truth = {}
    for item in body["items"]:
        outdated = OUTDATED_LABEL in item["metadata"].get("labels", {})
        # A VMI being deleted is never outdated (docs/semantics.md).
        running = (
            item["status"]["phase"] == "Running" and "deletionTimestamp" not in item["metadata"]
        )
        result[item["metadata"]["name"]] = (
            item["status"].get("nodeName", ""),
            1.0 if outdated and running else 0.0,
        )
    return result


def observed(exporter: ExporterProcess, namespace: str) -> Truth:
    """The same facts as `/metrics` states them (a duplicate series fails the parse)."""
    samples = exporter.scrape()
    nodes = {
        dict(labels)["name"]: dict(labels)["node"]
        for (_, labels) in select(samples, "kubevirt_update_vmi_info", namespace=namespace)
    }
    outdated = {
        dict(labels)["name"]: value
        for (_, labels), value in select(
            samples, "kubevirt_update_vmi_outdated", namespace=namespace
        ).items()
    }
    assert set(nodes) == set(outdated), "dense families disagree on the set of VMIs"
    return {name: (nodes[name], outdated[name]) for name in nodes}


def converges(exporter: ExporterProcess, cluster: Cluster, namespace: str) -> None:
    """Wait until /metrics equals the API server's truth (within a generous bound)."""

    def same() -> bool:
        want, have = truth(cluster, namespace), observed(exporter, namespace)
        differ = {n: (want[n], have[n]) for n in set(want) & set(have) if want[n] != have[n]}
        missing, stale = set(want) - set(have), set(have) - set(want)
        assert have == want, f"missing={missing} stale={stale} (want, have)={differ}"
        return True

    eventually(same, timeout=120, what="/metrics to equal the API server")


def patch_vmi(cluster: Cluster, namespace: str, name: str, patch: dict[str, Any]) -> None:
    obj = {"kind": "VirtualMachineInstance", "metadata": {"namespace": namespace, "name": name}}
    status, body = cluster.request("PATCH", kubevirt_path(obj), patch)
    assert status == 200, body


def delete_vmi(cluster: Cluster, namespace: str, name: str) -> None:
    obj = {"kind": "VirtualMachineInstance", "metadata": {"namespace": namespace, "name": name}}
    status, body = cluster.request("DELETE", kubevirt_path(obj))
    assert status == 200, body


def mutate(cluster: Cluster, namespace: str, *, start: int) -> None:
    """Delete a quarter of the VMIs, move and outdate another quarter, create a few new ones."""
    names = sorted(truth(cluster, namespace))
    quarter = max(1, len(names) // 4)
    for name in names[:quarter]:
        delete_vmi(cluster, namespace, name)
    for name in names[quarter : 2 * quarter]:
        patch = {
            "metadata": {"labels": {OUTDATED_LABEL: ""}},
            "status": {"nodeName": "node-moved"},
        }
        patch_vmi(cluster, namespace, name, patch)
    for index in range(start, start + quarter):
        cluster.create(make_vmi(namespace, index, outdated=index % 2 == 0))


@pytest.fixture
def populated(cluster: Cluster, namespace: str) -> str:
    for index in range(24):
        cluster.create(make_vmi(namespace, index, outdated=index % 3 == 0))
    return namespace


@pytest.fixture
def exporter(cluster: Cluster, populated: str, tmp_path: Path) -> Iterator[ExporterProcess]:
    args = ["--kubeconfig", str(cluster.kubeconfig), "--namespace", populated]
    with ExporterProcess(args, workdir=tmp_path) as proc:
        proc.wait_ready()
        yield proc


def test_apiserver_killed_mid_watch_then_changes_converge(
    cluster: Cluster, populated: str, exporter: ExporterProcess
) -> None:
    converges(exporter, cluster, populated)

    cluster.apiserver.stop(signal.SIGKILL)
    try:
        # The process and its loop stay healthy while the API server is gone.
        assert exporter.get("/healthz")[0] == 200
        assert exporter.alive()
    finally:
        cluster.apiserver.start()
        cluster.wait_ready()

    mutate(cluster, populated, start=100)
    converges(exporter, cluster, populated)
    assert exporter.alive()


def test_changes_while_disconnected_past_a_compaction_relist_and_drop_deleted_vmis(
    cluster: Cluster, populated: str, exporter: ExporterProcess
) -> None:
    converges(exporter, cluster, populated)
    gone_before = exporter.scrape().get(
        ("kubevirt_update_exporter_watch_total", (("resource", VMIS), ("result", "gone"))), 0.0
    )

    os.kill(exporter.popen.pid, signal.SIGSTOP)
    try:
        # Cut the exporter's watches first, so nothing of what follows is buffered for it.
        cluster.restart_apiserver()
        mutate(cluster, populated, start=200)
        cluster.compact()
        # A fresh watch cache starts after the compaction: resuming from the old version is 410.
        cluster.restart_apiserver()
    finally:
        os.kill(exporter.popen.pid, signal.SIGCONT)

    converges(exporter, cluster, populated)
    samples = exporter.scrape()
    gone_after = samples.get(
        ("kubevirt_update_exporter_watch_total", (("resource", VMIS), ("result", "gone"))), 0.0
    )
    assert gone_after > gone_before, "the resumed watch should have been answered 410 Gone"


def test_flood_of_updates_converges_to_the_final_state(
    cluster: Cluster, populated: str, exporter: ExporterProcess
) -> None:
    names = sorted(truth(cluster, populated))
    rounds = 40  # 24 VMIs x 40 rounds = 960 writes, from 8 writers at once

    def write(job: tuple[int, str]) -> None:
        round_, name = job
        labels = {OUTDATED_LABEL: ""} if round_ % 2 == 0 else {OUTDATED_LABEL: None}
        patch = {"metadata": {"labels": labels}, "status": {"nodeName": f"node-r{round_}"}}
        patch_vmi(cluster, populated, name, patch)

    for round_ in range(rounds):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, [(round_, name) for name in names]))

    converges(exporter, cluster, populated)
    final = observed(exporter, populated)
    assert {node for node, _ in final.values()} == {f"node-r{rounds - 1}"}
    events = select(exporter.scrape(), "kubevirt_update_exporter_watch_events_total", resource=VMIS)
    assert sum(events.values()) >= len(names) * rounds


def test_sigterm_during_scrapes_exits_cleanly(
    cluster: Cluster, populated: str, exporter: ExporterProcess
) -> None:
    for index in range(300, 500):
        cluster.create(make_vmi(populated, index))
    converges(exporter, cluster, populated)

    stop = threading.Event()
    outcomes: list[str] = []

    def scrape_until_stopped() -> None:
        while not stop.is_set():
            try:
                status, _ = exporter.get("/metrics", {"Accept-Encoding": "gzip"})
                outcomes.append(str(status))
            except OSError as err:  # the server went away mid-request: expected
                outcomes.append(type(err).__name__)
                return

    scrapers = [threading.Thread(target=scrape_until_stopped) for _ in range(4)]
    for thread in scrapers:
        thread.start()
    eventually(lambda: len(outcomes) >= 8, timeout=60, what="scrapes under way")
    code = exporter.stop()
    stop.set()
    for thread in scrapers:
        thread.join(30)

    assert code == 0, exporter.log_tail()
    assert "Traceback" not in exporter.log.read_text()
    assert "200" in outcomes


def test_readiness_names_what_is_missing_until_the_apiserver_answers(
    cluster: Cluster, populated: str, tmp_path: Path
) -> None:
    cluster.apiserver.stop()
    try:
        args = ["--kubeconfig", str(cluster.kubeconfig), "--namespace", populated]
        with ExporterProcess(args, workdir=tmp_path) as proc:

            def unready_naming_kinds() -> bool:
                status, text = proc.get("/readyz")
                assert status == 503, text
                assert VMIS in text and "kubevirts" in text, text
                return True

            eventually(unready_naming_kinds, timeout=60, what="/readyz 503 naming the kinds")
            assert proc.get("/healthz")[0] == 200
            cluster.apiserver.start()
            cluster.wait_ready()
            proc.wait_ready()
            converges(proc, cluster, populated)
    finally:
        if not cluster.apiserver.alive():
            cluster.apiserver.start()
            cluster.wait_ready()

"""Differential test: the exporter's verdicts against KubeVirt's own code on the same objects.

A dedicated test cluster (upstream's CRDs) runs upstream's eviction webhook for the whole module
and, for each generated fleet (tests/fleets.py), upstream's workload updater (tests/oracle.py).
Per fleet:
1. the fleet is created (VMIs with their virt-launcher Pods, VMs, VMIMs, then the KubeVirt CR);
2. the exporter (`serve --kubeconfig`) is scraped once it has seen all of it: its verdicts are
   taken before upstream acts, so they describe what upstream is about to do;
3. upstream's updater runs one round and is stopped; what it did is read back from the cluster
   (the KubeVirt CR's status, the VMIMs it created, the evictions the webhook answered, the VMIs
   it marked, the pods it let go);
4. the two are compared (`compare`), and every disagreement is collected.
Disagreements fail the test after every fleet ran, with the smallest fleet (shrunk by dropping
VMIs) that still disagrees. A one-line summary is printed.

Without the oracle binary or the cluster the test fails; it never skips.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exporter.model import Method
from tests import builders
from tests.cluster import Cluster, keep_logs, kubevirt_path
from tests.conftest import ARTIFACTS
from tests.exporter_process import ExporterProcess, Samples, eventually, select
from tests.fleets import Fleet, VmiCase, generate
from tests.oracle import Updater, Verdict, Webhook, launcher_pod
from tests.prometheus import DASHBOARD, labelled, rules, running_prometheus

pytestmark = [pytest.mark.cluster, pytest.mark.upstream]

SEED = int(os.environ.get("ORACLE_SEED", "13"))
FLEETS = int(os.environ.get("ORACLE_FLEETS", "16"))
KUBEVIRT_NAMESPACE = builders.KUBEVIRT_NAMESPACE
#: How long upstream's first round may take: its throttle alone is 5 s (workload-updater.go
#: `defaultThrottleInterval`).
ROUND_TIMEOUT = 90.0
#: Upstream acts in one sync; nothing new for this long means the round is over.
QUIET = 1.5
#: Without convergence upstream must stay silent at least past its 5 s throttle.
SILENT_FOR = 7.0
#: Re-runs allowed to shrink a disagreeing fleet.
SHRINK_BUDGET = 4


@dataclass
class Oracle:
    """The dedicated cluster and the long-lived processes of the module."""

    cluster: Cluster
    exporter: ExporterProcess
    webhook: Webhook
    #: upstream's workload updater, running across fleets (None once a test stopped it)
    updater: Updater | None
    workdir: Path
    #: whether the exporter has seen a converged control plane (it holds its count after that)
    exporter_converged_once: bool = False


@pytest.fixture(scope="module")
def oracle(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Oracle]:
    workdir = tmp_path_factory.mktemp("oracle")
    cluster = Cluster.start(workdir / "cluster")
    exporter: ExporterProcess | None = None
    webhook: Webhook | None = None
    state: Oracle | None = None
    updater: Updater | None = None
    try:
        # Start all three before waiting for any: each takes seconds to come up.
        exporter = ExporterProcess(["--kubeconfig", str(cluster.kubeconfig)], workdir=workdir)
        updater = Updater.start(
            cluster,
            workdir,
            launcher_image=builders.TARGET_IMAGE,
            kubevirt_namespace=KUBEVIRT_NAMESPACE,
            wait=False,
        )
        webhook = Webhook.start(cluster, workdir, kubevirt_namespace=KUBEVIRT_NAMESPACE)
        cluster.ensure_namespace(KUBEVIRT_NAMESPACE)
        updater.wait_running()
        state = Oracle(cluster, exporter, webhook, updater, workdir)
        exporter.wait_ready()
        yield state
    finally:
        if state is not None:
            updater = state.updater
        if updater is not None:
            updater.process.stop()
        if exporter is not None:
            exporter.stop()
        if webhook is not None:
            Webhook.unregister(cluster)
            webhook.process.stop()
        cluster.stop()
        if request.session.testsfailed:
            kept = keep_logs(cluster, ARTIFACTS / f"oracle-{os.getpid()}")
            for path in workdir.glob("*.log"):
                (kept / path.name).write_bytes(path.read_bytes())
            print(f"\noracle logs kept in {kept}")


# -- what each side says -------------------------------------------------------------------------


@dataclass(frozen=True)
class ExporterView:
    """The exporter's claims about one fleet, scraped before upstream acted."""

    #: sum(kubevirt_update_outdated_vmis), None when it has no series
    count: float | None
    converged: bool
    #: outdated VMI -> method (kubevirt_update_vmi_update_state)
    methods: dict[str, Method]
    live_migratable: dict[str, bool]
    eviction_strategy: dict[str, str]


@dataclass(frozen=True)
class UpstreamView:
    """What upstream did with one fleet."""

    #: status.outdatedVirtualMachineInstanceWorkloads, None when it wrote nothing
    count: int | None
    #: VMIs it created a workload-update VMIM for
    migrated: frozenset[str]
    #: VMI -> the webhook's first answer to the updater's eviction of its launcher pod
    evicted: dict[str, Verdict]
    #: VMIs with status.evacuationNodeName set
    evacuating: frozenset[str]
    #: VMIs whose launcher pod has a deletionTimestamp (or is gone)
    pod_deleted: frozenset[str]


@dataclass
class Tally:
    fleets: int = 0
    vmis: int = 0
    checks: int = 0
    agreements: int = 0
    disagreements: list[str] = field(default_factory=list)

    def check(self, agree: bool, what: str) -> None:
        self.checks += 1
        if agree:
            self.agreements += 1
        else:
            self.disagreements.append(what)


# -- running one fleet ---------------------------------------------------------------------------


class UpstreamWasFirst(Exception):
    """Upstream acted before the exporter was scraped: the scrape may already show its work."""


def run_fleet(oracle: Oracle, fleet: Fleet) -> tuple[ExporterView, UpstreamView]:
    """Create the fleet, read both sides, and remove it again.

    Upstream's updater runs all along and acts 5 s after it sees the KubeVirt CR
    (workload-updater.go `defaultThrottleInterval`); the exporter is scraped in that window. A
    scrape that came too late (the count is already written) is thrown away and the fleet run
    again.
    """
    for _attempt in range(3):
        try:
            return run_fleet_once(oracle, fleet)
        except UpstreamWasFirst:
            continue
    raise AssertionError(f"the exporter could not be scraped before upstream acted: {fleet}")


def run_fleet_once(oracle: Oracle, fleet: Fleet) -> tuple[ExporterView, UpstreamView]:
    updater = oracle.updater
    assert updater is not None, "upstream's updater was stopped"
    namespace = f"oracle-{fleet.index}-{uuid.uuid4().hex[:6]}"
    cluster = oracle.cluster
    cluster.ensure_namespace(namespace)
    try:
        user_vmims = create_fleet(cluster, fleet, namespace)
        exporter_view = scrape_fleet(oracle, fleet, namespace, user_vmims)
        if reported_count(cluster, fleet) is not None:
            raise UpstreamWasFirst(fleet.describe())
        upstream_view = watch_upstream(oracle, fleet, namespace, user_vmims, updater)
        return exporter_view, upstream_view
    finally:
        remove_fleet(oracle, fleet, namespace)


def reported_count(cluster: Cluster, fleet: Fleet) -> int | None:
    """status.outdatedVirtualMachineInstanceWorkloads of the fleet's KubeVirt CR, None if unset."""
    status, body = cluster.request("GET", kubevirt_path(fleet.kubevirt()))
    assert status == 200, body
    value = body.get("status", {}).get("outdatedVirtualMachineInstanceWorkloads")
    return None if value is None else int(value)


def having(samples: Samples, metric: str, labels: dict[str, str]) -> Samples:
    """The samples of `metric` whose labels include `labels` (which may include `name`)."""
    return {
        key: value
        for key, value in samples.items()
        if key[0] == metric and labels.items() <= dict(key[1]).items()
    }


def create_fleet(cluster: Cluster, fleet: Fleet, namespace: str) -> set[str]:
    """Create every object; the deleting VMIs first (so the last VMI event the exporter sees is
    a creation), the KubeVirt CR last. Returns the names of the VMIMs the fleet brought."""
    deleting = [case for case in fleet.vmis if case.deleting]
    others = [case for case in fleet.vmis if not case.deleting]
    vmims: set[str] = set()
    for case in [*deleting, *others]:
        vmi = case.vmi(namespace)
        if case.deleting:
            # A finalizer that nobody removes keeps the VMI in deletion.
            vmi["metadata"]["finalizers"] = ["kubevirt.io/virtualMachineControllerFinalize"]
            stored = cluster.create(vmi)
            status, body = cluster.request("DELETE", kubevirt_path(stored))
            assert status in (200, 202), body
        else:
            stored = cluster.create(vmi, finalizers=False)
        image = case.image or builders.TARGET_IMAGE
        status, body = cluster.request(
            "POST", f"/api/v1/namespaces/{namespace}/pods", launcher_pod(stored, image=image)
        )
        assert status == 201, f"creating the launcher pod of {case.name}: {status} {body}"
        vm = case.vm(namespace)
        if vm is not None:
            cluster.create(vm, finalizers=False)
        for vmim in case.vmims(namespace):
            cluster.create(vmim, finalizers=False)
            vmims.add(vmim["metadata"]["name"])
    cluster.create(fleet.kubevirt(), finalizers=False)
    return vmims


def scrape_fleet(
    oracle: Oracle, fleet: Fleet, namespace: str, user_vmims: set[str]
) -> ExporterView:
    """Scrape once the exporter has seen the whole fleet: its object counts are the fleet's (the
    previous fleet was removed and seen removed) and the KubeVirt CR's status is in."""
    expected = {
        "virtualmachineinstances": len(fleet.vmis),
        "virtualmachines": sum(1 for case in fleet.vmis if case.run_strategy is not None),
        "virtualmachineinstancemigrations": len(user_vmims),
        "kubevirts": 1,
    }

    def synced() -> Samples | None:
        samples = oracle.exporter.scrape()
        objects = {
            dict(key[1])["resource"]: value
            for key, value in select(samples, "kubevirt_update_exporter_objects").items()
        }
        info = having(
            samples,
            "kubevirt_update_kubevirt_info",
            {"name": fleet.kubevirt_name, "observed_version": builders.NEW_VERSION},
        )
        if objects == expected and info:
            return samples
        return None

    samples: Samples = eventually(synced, timeout=60, what=f"the exporter to see {namespace}")
    methods: dict[str, Method] = {}
    for key in select(samples, "kubevirt_update_vmi_update_state", namespace=namespace):
        labels = dict(key[1])
        methods[labels["name"]] = labels["method"]  # type: ignore[assignment]  # a Method by contract
    live = {
        dict(key[1])["name"]: value == 1
        for key, value in select(
            samples, "kubevirt_update_vmi_live_migratable", namespace=namespace
        ).items()
    }
    strategies = {
        dict(key[1])["name"]: dict(key[1])["eviction_strategy"]
        for key in select(samples, "kubevirt_update_vmi_info", namespace=namespace)
    }
    aggregate = select(samples, "kubevirt_update_outdated_vmis")
    converged = having(samples, "kubevirt_update_kubevirt_converged", {"name": fleet.kubevirt_name})
    return ExporterView(
        count=sum(aggregate.values()) if aggregate else None,
        converged=any(value == 1 for value in converged.values()),
        methods=methods,
        live_migratable=live,
        eviction_strategy=strategies,
    )


def watch_upstream(
    oracle: Oracle, fleet: Fleet, namespace: str, user_vmims: set[str], updater: Updater
) -> UpstreamView:
    """Wait for upstream's round (or for its silence when not converged) and read what it did."""
    cluster = oracle.cluster

    def actions() -> tuple[frozenset[str], frozenset[str]]:
        """(VMIMs upstream created, pods whose eviction the webhook answered): evictions that
        fail are retried every batch interval, so only new pods mean a round still going on."""
        status, body = cluster.request(
            "GET",
            f"/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstancemigrations",
        )
        assert status == 200, body
        created = frozenset(
            item["metadata"]["name"]
            for item in body["items"]
            if item["metadata"]["name"] not in user_vmims
        )
        pods = frozenset(v.pod for v in oracle.webhook.verdicts() if v.namespace == namespace)
        return created, pods

    if fleet.converged:

        def written() -> bool:
            updater.process.check()
            return reported_count(cluster, fleet) is not None

        eventually(written, timeout=ROUND_TIMEOUT, what=f"upstream to count {fleet.describe()}")
        last, since = actions(), time.monotonic()
        deadline = since + ROUND_TIMEOUT
        while time.monotonic() - since < QUIET:
            assert time.monotonic() < deadline, f"upstream never went quiet: {fleet.describe()}"
            time.sleep(0.3)
            updater.process.check()
            now = actions()
            if now != last:
                last, since = now, time.monotonic()
    else:
        time.sleep(SILENT_FOR)
        updater.process.check()

    status, body = cluster.request(
        "GET", f"/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstancemigrations"
    )
    assert status == 200, body
    migrated = frozenset(
        item["spec"]["vmiName"]
        for item in body["items"]
        if item["metadata"]["name"] not in user_vmims
        and "kubevirt.io/workloadUpdateMigration" in item["metadata"].get("annotations", {})
    )
    pods_by_name = {f"virt-launcher-{case.name}-x7k2p": case.name for case in fleet.vmis}
    evicted: dict[str, Verdict] = {}
    for verdict in oracle.webhook.verdicts():
        if verdict.namespace == namespace and verdict.pod in pods_by_name:
            evicted.setdefault(pods_by_name[verdict.pod], verdict)
    status, body = cluster.request(
        "GET", f"/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances"
    )
    assert status == 200, body
    evacuating = frozenset(
        item["metadata"]["name"]
        for item in body["items"]
        if item.get("status", {}).get("evacuationNodeName")
    )
    status, body = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods")
    assert status == 200, body
    present = {
        pods_by_name[item["metadata"]["name"]]: "deletionTimestamp" in item["metadata"]
        for item in body["items"]
    }
    pod_deleted = frozenset(case.name for case in fleet.vmis if present.get(case.name, True))
    return UpstreamView(reported_count(cluster, fleet), migrated, evicted, evacuating, pod_deleted)


def remove_fleet(oracle: Oracle, fleet: Fleet, namespace: str) -> None:
    """Delete everything the fleet and upstream made, and wait until the exporter saw it go."""
    cluster = oracle.cluster
    for case in fleet.vmis:
        if case.deleting:
            path = kubevirt_path(case.vmi(namespace))
            cluster.request("PATCH", path, {"metadata": {"finalizers": None}})
    for plural in (
        "virtualmachineinstances",
        "virtualmachines",
        "virtualmachineinstancemigrations",
    ):
        status, body = cluster.request(
            "DELETE", f"/apis/kubevirt.io/v1/namespaces/{namespace}/{plural}"
        )
        assert status == 200, f"deleting {plural} in {namespace}: {status} {body}"
    status, body = cluster.request(
        "DELETE", f"/api/v1/namespaces/{namespace}/pods?gracePeriodSeconds=0"
    )
    assert status == 200, f"deleting pods in {namespace}: {status} {body}"
    status, body = cluster.request("DELETE", kubevirt_path(fleet.kubevirt()))
    assert status in (200, 404), body

    def gone() -> bool:
        samples = oracle.exporter.scrape()
        objects = select(samples, "kubevirt_update_exporter_objects")
        return bool(objects) and all(value == 0 for value in objects.values())

    eventually(gone, timeout=60, what=f"the exporter to see {namespace} removed")


# -- comparing -----------------------------------------------------------------------------------


def compare(
    fleet: Fleet, ours: ExporterView, theirs: UpstreamView, tally: Tally, *, fresh: bool
) -> None:
    """Check every claim of the exporter against what upstream did (see the module docstring).

    `fresh`: the exporter has never seen a converged control plane, so it must not have a count.
    """
    where = fleet.describe()
    if fleet.converged:
        # Converged, the aggregate has a series per (namespace, reason, method, action) that
        # holds VMIs: none at all is a count of 0.
        counted = ours.count if ours.count is not None or not ours.converged else 0.0
        tally.check(
            counted == theirs.count,
            f"{where}: exporter counts {counted} outdated VMIs, upstream {theirs.count}",
        )
    else:
        tally.check(
            theirs.count is None and not ours.converged and (ours.count is None or not fresh),
            f"{where}: unconverged, upstream wrote {theirs.count}, exporter converged="
            f"{ours.converged} count={ours.count}",
        )
    evict_enabled = "Evict" in fleet.update_methods and fleet.converged
    for case in fleet.vmis:
        method = ours.methods.get(case.name)
        said = f"{where}: {case.name} exporter method={method}: {case}"
        tally.check(
            (method == "live_migrate" and fleet.converged) == (case.name in theirs.migrated),
            f"{said} | upstream migrated it: {case.name in theirs.migrated}",
        )
        expect_eviction = fleet.converged and (
            method in ("evict", "evict_stops") or (method == "none" and evict_enabled)
        )
        verdict = theirs.evicted.get(case.name)
        tally.check(
            expect_eviction == (verdict is not None),
            f"{said} | upstream evicted its pod: {verdict}",
        )
        if verdict is None or not expect_eviction:
            continue
        tally.check(
            verdict_agrees(case, method, ours, theirs, verdict),
            f"{said} | webhook: {verdict}, evacuating={case.name in theirs.evacuating}, "
            f"pod deleted={case.name in theirs.pod_deleted}",
        )


def verdict_agrees(
    case: VmiCase, method: Method | None, ours: ExporterView, theirs: UpstreamView, verdict: Verdict
) -> bool:
    """The webhook's answer is the one `eviction_outcome` predicts from the exporter's labels."""
    name = case.name
    strategy = ours.eviction_strategy.get(name)
    marked = name in theirs.evacuating
    deleted = name in theirs.pod_deleted
    migratable = ours.live_migratable.get(name, False)
    if method == "evict" and strategy in ("LiveMigrate", "LiveMigrateIfPossible") and migratable:
        # Evacuation: the VMI is marked and the pod stays.
        return not verdict.allowed and marked and not deleted
    if method in ("evict", "evict_stops"):
        return verdict.allowed and deleted and not marked
    # none: refused; External also marks the VMI for the external evacuator.
    return not verdict.allowed and not deleted and marked == (strategy == "External")


def shrink(oracle: Oracle, fleet: Fleet, tally: Tally) -> tuple[Fleet, list[str]]:
    """The smallest fleet found (within SHRINK_BUDGET runs) that still disagrees."""
    smallest, problems = fleet, [d for d in tally.disagreements if fleet.describe() in d]
    named = {case.name for case in fleet.vmis if any(f" {case.name} " in d for d in problems)}
    candidates = [fleet.without(case.name for case in fleet.vmis if case.name not in named)]
    candidates += [smallest.without([name]) for name in sorted(named)][: SHRINK_BUDGET - 1]
    for candidate in candidates:
        if not candidate.vmis or len(candidate.vmis) >= len(smallest.vmis):
            continue
        attempt = Tally()
        ours, theirs = run_fleet(oracle, candidate)
        compare(candidate, ours, theirs, attempt, fresh=False)
        if attempt.disagreements:
            smallest, problems = candidate, attempt.disagreements
    return smallest, problems


# -- the tests -----------------------------------------------------------------------------------


def test_the_exporter_agrees_with_upstreams_updater_and_webhook_on_generated_fleets(
    oracle: Oracle,
) -> None:
    tally = Tally()
    failing: Fleet | None = None
    for fleet in generate(SEED, FLEETS):
        before = len(tally.disagreements)
        ours, theirs = run_fleet(oracle, fleet)
        compare(fleet, ours, theirs, tally, fresh=not oracle.exporter_converged_once)
        oracle.exporter_converged_once |= ours.converged
        tally.fleets += 1
        tally.vmis += len(fleet.vmis)
        if failing is None and len(tally.disagreements) > before:
            failing = fleet
    print(
        f"\nupstream oracle (kubevirt v1.7.0, seed {SEED}): {tally.fleets} fleets, "
        f"{tally.vmis} VMIs, {tally.agreements}/{tally.checks} verdicts agree"
    )
    if failing is not None:
        smallest, problems = shrink(oracle, failing, tally)
        shown = "\n".join(tally.disagreements[:40])
        pytest.fail(
            f"{len(tally.disagreements)} disagreements with upstream:\n{shown}\n\n"
            f"smallest disagreeing fleet ({len(smallest.vmis)} VMIs): {smallest.describe()}\n"
            + "\n".join(f"  {case}" for case in smallest.vmis)
            + "\n"
            + "\n".join(problems),
            pytrace=False,
        )


def plain_case(name: str, *, image: str, live_migratable: bool) -> VmiCase:
    """A Running VMI under a VM with runStrategy Always, nothing else going on."""
    return VmiCase(
        name=name,
        node="node-1",
        phase="Running",
        deleting=False,
        image=image,
        live_migratable=live_migratable,
        not_migratable_reason="DisksNotLiveMigratable",
        duplicate_migratable=False,
        changes=(),
        change_status="True",
        migration_state="",
        migrated_volumes=0,
        storage_not_migratable=False,
        rwo_left_behind=False,
        eviction_strategy=None,
        run_strategy="Always",
        migrations=(),
    )


def test_the_count_drift_alert_and_dashboard_panel_read_the_count_upstreams_updater_wrote(
    oracle: Oracle, tmp_path: Path
) -> None:
    """Three outdated VMIs and one up to date: upstream's updater writes 3 into the KubeVirt CR,
    Prometheus sees both counts equal and the drift expression empty. Then virt-controller is
    restarted with another launcher image than the CR publishes (as with a mirrored registry):
    upstream now counts the one VMI on the published image, and the drift expression fires with
    the exporter's 3."""
    fleet = Fleet(
        seed=SEED,
        index=999,
        unconverged="",
        update_methods=("LiveMigrate",),
        eviction_strategy=None,
        publish_target=True,
        vmis=(
            plain_case("web-1", image=builders.OLD_IMAGE, live_migratable=True),
            plain_case("web-2", image=builders.OLD_IMAGE, live_migratable=True),
            plain_case("db", image=builders.OLD_IMAGE, live_migratable=False),
            plain_case("fresh", image=builders.TARGET_IMAGE, live_migratable=True),
        ),
    )
    namespace = f"oracle-drift-{uuid.uuid4().hex[:6]}"
    cluster = oracle.cluster
    cluster.ensure_namespace(namespace)
    # This test runs its own updaters, one with another launcher image.
    if oracle.updater is not None:
        oracle.updater.stop()
        oracle.updater = None
    try:
        create_fleet(cluster, fleet, namespace)
        updater = Updater.start(
            cluster,
            oracle.workdir,
            launcher_image=builders.TARGET_IMAGE,
            kubevirt_namespace=KUBEVIRT_NAMESPACE,
        )
        try:
            eventually(
                lambda: reported_count(cluster, fleet) == 3,
                timeout=ROUND_TIMEOUT,
                what="upstream to count 3",
            )
        finally:
            updater.stop()
        drift = rules()["KubevirtUpdateExporterCountDrift"]["expr"]
        panel = panel_queries("Outdated VMIs: exporter vs KubeVirt")
        with running_prometheus(f"127.0.0.1:{oracle.exporter.port}", tmp_path) as prometheus:

            def both_counts() -> list[float]:
                values = [labelled(prometheus.query(expr)).get((), -1.0) for expr in panel]
                return values if values == [3.0, 3.0] else []

            eventually(both_counts, what="the panel's two queries to give 3 and 3")
            assert prometheus.query(drift) == []
            assert labelled(prometheus.query("kubevirt_update_kubevirt_reported_outdated_vmis"))
            updater = Updater.start(
                cluster,
                oracle.workdir,
                launcher_image=builders.OLD_IMAGE,
                kubevirt_namespace=KUBEVIRT_NAMESPACE,
            )
            try:
                eventually(
                    lambda: reported_count(cluster, fleet) == 1,
                    timeout=ROUND_TIMEOUT,
                    what="upstream to count 1",
                )
            finally:
                updater.stop()
            fired = eventually(
                lambda: labelled(prometheus.query(drift)), what="the drift expression to fire"
            )
            assert fired == {(): 3.0}
            assert [labelled(prometheus.query(expr))[()] for expr in panel] == [3.0, 1.0]
    finally:
        remove_fleet(oracle, fleet, namespace)


def panel_queries(title: str) -> list[str]:
    """The PromQL queries of the dashboard panel titled `title`."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in board["panels"]:
        if panel.get("title") == title:
            return [target["expr"] for target in panel["targets"]]
    raise AssertionError(f"no dashboard panel titled {title!r}")

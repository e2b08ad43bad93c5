"""End to end: API server -> exporter -> real Prometheus -> the shipped alerts and dashboard.

Objects are created in the real kube-apiserver (`cluster`), the real exporter
(`python -m exporter serve --kubeconfig ...`) watches them, and a real Prometheus
(`/usr/bin/prometheus`, Debian package `prometheus`) scrapes it every second with
`honor_labels: true` under the job name the rules expect, and loads
alerts/kubevirt-update-exporter.rules.yaml. Each alert's EXPRESSION is queried (the `for`
durations are far too long to wait for the alerts themselves), pending alerts show their
descriptions rendered by Prometheus' own template `query`, and every dashboard query runs.
Without Prometheus these tests fail; they never skip.

The tests of this module share one exporter and one Prometheus and run in file order: the last
one stops the exporter.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests import builders
from tests.cluster import Cluster, kubevirt_path
from tests.exporter_process import ExporterProcess, eventually
from tests.prometheus import (
    DASHBOARD,
    JOB,
    Prometheus,
    Result,
    labelled,
    rules,
    running_prometheus,
)

pytestmark = pytest.mark.cluster

#: KubeVirt's own count on our CR: far from anything we count, so the drift guard must see it.
REPORTED = 100000
#: Metadata the API server sets itself; finalizers are dropped (no controller would remove them).


# -- the objects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """What the test created: two VMI namespaces and the one KubeVirt CR."""

    apps: str
    api: str
    kubevirt: dict[str, Any]


def outdated(name: str, namespace: str, **fields: Any) -> dict[str, Any]:
    return builders.vmi(
        name, namespace, launcher_image=builders.OLD_IMAGE, outdated_label=True, **fields
    )


def create(cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    """Create `obj` (status included) without finalizers, so deletes really delete."""
    return cluster.create(obj, finalizers=False)


def delete(cluster: Cluster, obj: dict[str, Any]) -> None:
    status, body = cluster.request("DELETE", kubevirt_path(obj))
    assert status in (200, 202, 404), body
    if status != 404 and body.get("metadata", {}).get("finalizers"):
        cluster.request("PATCH", kubevirt_path(obj), {"metadata": {"finalizers": None}})


def remove_leftover_kubevirts(cluster: Cluster) -> None:
    """Upstream acts only with exactly one KubeVirt CR (and so does the exporter); CRs left in
    the shared cluster by earlier tests are garbage, as every test creates its own."""
    status, body = cluster.request("GET", "/apis/kubevirt.io/v1/kubevirts")
    assert status == 200, body
    for item in body.get("items", []):
        delete(cluster, {"kind": "KubeVirt", "metadata": item["metadata"]})


@pytest.fixture(scope="module")
def world(cluster: Cluster) -> Iterator[World]:
    """Namespace `apps`: two outdated VMIs KubeVirt live-migrates (wait), one it cannot migrate
    under a VM that restarts it (restart), one standalone that cannot migrate (manual), one up to
    date. Namespace `api`: one outdated VMI whose update migration failed. One converged KubeVirt
    CR with LiveMigrate that reports REPORTED outdated VMIs."""
    suffix = uuid.uuid4().hex[:8]
    apps, api = f"e2e-apps-{suffix}", f"e2e-api-{suffix}"
    remove_leftover_kubevirts(cluster)
    kubevirt = builders.kubevirt("kubevirt", f"e2e-kubevirt-{suffix}", reported_outdated=REPORTED)
    objects = [
        kubevirt,
        outdated("web-1", apps),
        builders.vm("web-1", apps),
        outdated("web-2", apps),
        builders.vm("web-2", apps),
        outdated("db", apps, live_migratable=False),
        builders.vm("db", apps, run_strategy="Always"),
        outdated("pet", apps, owner_vm=None, live_migratable=False),
        builders.vmi("fresh", apps),
        builders.vm("fresh", apps),
        outdated("gateway", api),
        builders.vm("gateway", api),
        builders.vmim("attempt-1", api, vmi_name="gateway", phase="Failed", workload_update=True),
    ]
    for obj in objects:
        create(cluster, obj)
    try:
        yield World(apps=apps, api=api, kubevirt=kubevirt)
    finally:
        delete(cluster, kubevirt)


# -- the processes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exporter(
    cluster: Cluster, world: World, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    """The exporter, unscoped (so it also exports KubeVirt's reported count)."""
    process = ExporterProcess(
        ["--kubeconfig", str(cluster.kubeconfig)], workdir=tmp_path_factory.mktemp("exporter")
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def prometheus(
    exporter: ExporterProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    with running_prometheus(
        f"127.0.0.1:{exporter.port}", tmp_path_factory.mktemp("prometheus")
    ) as client:
        yield client


# -- helpers ----------------------------------------------------------------------------------


def in_namespaces(result: Result, *namespaces: str) -> Result:
    return [sample for sample in result if sample["metric"].get("namespace") in namespaces]


# -- the tests --------------------------------------------------------------------------------


def test_series_reach_prometheus_under_the_vmis_own_namespace(
    prometheus: Prometheus, world: World
) -> None:
    def info() -> Result:
        return in_namespaces(prometheus.query("kubevirt_update_vmi_info"), world.apps, world.api)

    found = eventually(lambda: len(info()) == 6 and info(), what="the six VMIs in Prometheus")
    assert labelled(found, "namespace", "name") == {
        (world.apps, "web-1"): 1,
        (world.apps, "web-2"): 1,
        (world.apps, "db"): 1,
        (world.apps, "pet"): 1,
        (world.apps, "fresh"): 1,
        (world.api, "gateway"): 1,
    }
    assert all("exported_namespace" not in sample["metric"] for sample in found)
    assert all(sample["metric"]["job"] == JOB for sample in found)
    values = prometheus.get("/api/v1/label/namespace/values", **{"match[]": "kubevirt_update_vmis"})
    assert {world.apps, world.api} <= set(values)


def test_each_alert_expression_evaluates_to_the_expected_alerts(
    prometheus: Prometheus, world: World
) -> None:
    exprs = {name: rule["expr"] for name, rule in rules().items()}

    def mine(name: str, *labels: str) -> dict[tuple[str, ...], float]:
        return labelled(
            in_namespaces(prometheus.query(exprs[name]), world.apps, world.api), *labels
        )

    expected_outdated = {(world.apps,): 4.0, (world.api,): 1.0}
    eventually(
        lambda: mine("OutdatedVirtualMachineInstanceWorkloads", "namespace") == expected_outdated,
        what="OutdatedVirtualMachineInstanceWorkloads",
    )
    assert mine("OutdatedVirtualMachineInstanceNeedsAction", "namespace", "action") == {
        (world.apps, "restart"): 1.0,
        (world.apps, "manual"): 1.0,
    }
    assert mine("VirtualMachineInstanceUpdateMigrationsFailing", "namespace") == {(world.api,): 1.0}
    total = labelled(prometheus.query("sum(kubevirt_update_outdated_vmis)"))[()]
    assert labelled(prometheus.query(exprs["KubevirtUpdateExporterCountDrift"])) == {(): total}
    for healthy in (
        "KubevirtUpdateExporterDown",
        "KubevirtUpdateExporterNotSynced",
        "KubevirtUpdateExporterListWatchErrors",
    ):
        assert prometheus.query(exprs[healthy]) == [], healthy


def test_every_rule_loads_and_evaluates_without_error(prometheus: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]]:
        groups = prometheus.get("/api/v1/rules", type="alert")["groups"]
        loaded = [rule for group in groups for rule in group["rules"]]
        assert {rule["name"] for rule in loaded} == set(rules())
        assert all(rule["health"] == "ok" for rule in loaded), loaded
        return loaded

    eventually(evaluated, what="every rule evaluated")


def test_pending_alerts_describe_the_vmis_with_prometheus_own_template_queries(
    prometheus: Prometheus, world: World
) -> None:
    def pending(name: str, **labels: str) -> dict[str, Any]:
        alerts = prometheus.get("/api/v1/alerts")["alerts"]
        matching = [
            a
            for a in alerts
            if a["labels"]["alertname"] == name and labels.items() <= a["labels"].items()
        ]
        assert len(matching) == 1, matching
        (found,) = matching
        assert found["state"] == "pending"
        return dict(found)

    workloads = eventually(
        lambda: pending("OutdatedVirtualMachineInstanceWorkloads", namespace=world.apps),
        what="pending OutdatedVirtualMachineInstanceWorkloads",
    )
    description = workloads["annotations"]["description"]
    assert description.startswith(f"4 running VMIs in namespace {world.apps} ")
    assert "By method/action: live_migrate/wait=2, none/manual=1, none/restart=1." in description
    assert "VMIs (action): db (restart), pet (manual), web-1 (wait), web-2 (wait)." in description
    assert (
        f"2 of them need a human: `kubevirt-update-exporter report --namespace {world.apps}`"
        in description
    )
    assert "No workload update method is enabled" not in description
    assert workloads["labels"]["source"] == "kubevirt-update-exporter"

    restart = eventually(
        lambda: pending(
            "OutdatedVirtualMachineInstanceNeedsAction", namespace=world.apps, action="restart"
        ),
        what="pending OutdatedVirtualMachineInstanceNeedsAction",
    )
    assert "VMIs: db." in restart["annotations"]["description"]
    assert f"virtctl restart -n {world.apps} <name>" in restart["annotations"]["description"]

    failing = eventually(
        lambda: pending("VirtualMachineInstanceUpdateMigrationsFailing", namespace=world.api),
        what="pending VirtualMachineInstanceUpdateMigrationsFailing",
    )
    assert "gateway (1 failed)" in failing["annotations"]["description"]


def test_every_dashboard_query_runs_and_the_fleet_panels_have_data(
    prometheus: Prometheus, world: World
) -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    section = ""
    empty_fleet_panels = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            section = panel["title"]
            continue
        for target in panel["targets"]:
            expr = (
                target["expr"]
                .replace("$namespace", f"{world.apps}|{world.api}")
                .replace("$__rate_interval", "1m")
            )
            result = prometheus.query(expr)  # fails on any PromQL error
            if section == "Fleet overview" and not result:
                empty_fleet_panels.append(panel["title"])
    assert empty_fleet_panels == []


def test_the_down_expression_names_the_target_once_the_exporter_stops(
    prometheus: Prometheus, exporter: ExporterProcess
) -> None:
    down = rules()["KubevirtUpdateExporterDown"]["expr"]
    assert prometheus.query(down) == []
    assert exporter.stop() == 0
    result = eventually(lambda: prometheus.query(down), what="up == 0 after the exporter stopped")
    assert labelled(result, "job", "instance") == {(JOB, f"127.0.0.1:{exporter.port}"): 0.0}

"""`report`: rows, header, advice, output formats, filters, exit codes (docs/cli.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import main
from exporter.derive import control_plane as derive_control_plane
from exporter.model import (
    ACTIONS,
    METHODS,
    Action,
    ControlPlane,
    KubeVirt,
    UpdateMethod,
    VmiView,
)
from exporter.report import (
    API_VERSION,
    KIND,
    build_report,
    exit_code,
    render_json,
    render_table,
    render_yaml,
)
from exporter.selection import Selection
from tests import REPO, builders

NOW = 1_750_000_000.0


def view(name: str = "vm-1", namespace: str = "default", **changes: Any) -> VmiView:
    """An outdated, live-migratable VM-owned VMI that LiveMigrate updates, changed by `changes`."""
    outdated: dict[str, Any] = {
        "launcher_image": builders.OLD_IMAGE,
        "outdated": True,
        "outdated_reason": "launcher_image",
        "outdated_since": NOW - 3 * 3600,
    }
    return builders.view(name, namespace, **{**outdated, **changes})


def stuck(
    name: str, namespace: str = "default", action: Action = "restart", **changes: Any
) -> VmiView:
    """An outdated VMI that nothing updates (method none), not live-migratable."""
    return view(
        name,
        namespace,
        live_migratable=False,
        not_migratable_reason="DisksNotLiveMigratable",
        method="none",
        action=action,
        **changes,
    )


def kubevirt(
    *,
    namespace: str = "kubevirt",
    name: str = "kubevirt",
    methods: tuple[UpdateMethod, ...] = ("LiveMigrate",),
    hco: bool = False,
    parallel: int | None = None,
    phase: str = "Deployed",
) -> KubeVirt:
    return KubeVirt(
        namespace=namespace,
        name=name,
        phase=phase,
        observed_deployment_id="d2",
        target_deployment_id="d2",
        observed_version="v1.5.0",
        target_version="v1.5.0",
        update_methods=methods,
        batch_eviction_size=10,
        batch_eviction_interval_seconds=60.0,
        eviction_strategy=None,
        parallel_migrations_per_cluster=parallel,
        reported_outdated=None,
        target_launcher_image="quay.io/kubevirt/virt-launcher:v1.5.0",
        rebuilt_launcher_image="quay.io/kubevirt/virt-launcher:v1.5.0",
        available_since=NOW - 86400,
        hco_managed=hco,
    )


def control_plane(kv: KubeVirt | None = None, *, crs: int | None = None) -> ControlPlane:
    """What `derive.control_plane` makes of one CR `kv` (default: plain KubeVirt, LiveMigrate),
    or of `crs` CRs."""
    kvs = [kv or kubevirt()] if crs is None else [kubevirt(name=f"kv-{i}") for i in range(crs)]
    return derive_control_plane(kvs)


CP = control_plane()


def fleet() -> list[VmiView]:
    return [
        view("vm-b", "prod"),
        stuck("vm-a", "prod", action="restart"),
        view("db", "dev", live_migratable=True, method="none", action="migrate"),
        view(
            "pet",
            "dev",
            owner_kind="",
            run_strategy="",
            live_migratable=False,
            not_migratable_reason="HostDeviceNotLiveMigratable",
            method="none",
            action="manual",
        ),
        view("fresh", "prod", outdated=False, outdated_reason=None, outdated_since=None),
        view("off", "prod", phase="Succeeded", outdated=False, outdated_reason=None),
    ]


# -- rows --------------------------------------------------------------------------------------


def test_report_lists_only_outdated_vmis_sorted_by_namespace_and_name() -> None:
    doc = build_report(fleet(), CP, now=NOW)
    assert [(r["namespace"], r["name"]) for r in doc["vmis"]] == [
        ("dev", "db"),
        ("dev", "pet"),
        ("prod", "vm-a"),
        ("prod", "vm-b"),
    ]


def test_row_of_a_vm_owned_vmi_carries_every_field() -> None:
    row = build_report([stuck("vm-a", "prod", node="worker-7")], CP, now=NOW)["vmis"][0]
    assert row == {
        "namespace": "prod",
        "name": "vm-a",
        "node": "worker-7",
        "phase": "Running",
        "outdated": True,
        "reason": "launcher_image",
        "liveMigratable": False,
        "notLiveMigratableReason": "DisksNotLiveMigratable",
        "method": "none",
        "action": "restart",
        "vm": "vm-a",
        "runStrategy": "Always",
        "evictionStrategy": "None",
        "launcherImage": "quay.io/kubevirt/virt-launcher:v1.4.0",
        "outdatedSince": "2025-06-15T12:06:40Z",
        "updateMigrationFailures": 0,
        "why": row["why"],
    }
    assert "DisksNotLiveMigratable" in row["why"]
    assert "virtctl restart vm-a -n prod" in row["why"]


def test_row_of_a_standalone_vmi_has_no_vm_and_no_run_strategy() -> None:
    row = build_report(fleet(), CP, now=NOW)["vmis"][1]
    assert (row["name"], row["vm"], row["runStrategy"]) == ("pet", None, None)
    assert "standalone VMI" in row["why"]


def test_outdated_since_is_null_when_unknown() -> None:
    row = build_report([view(outdated_since=None)], CP, now=NOW)["vmis"][0]
    assert row["outdatedSince"] is None


# -- filters and exit codes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (Selection(namespaces=frozenset({"dev"})), ["db", "pet"]),
        (Selection(actions=frozenset({"restart", "manual"})), ["pet", "vm-a"]),
        (Selection(methods=frozenset({"live_migrate"})), ["vm-b"]),
        (Selection(namespaces=frozenset({"prod"}), methods=frozenset({"none"})), ["vm-a"]),
        (Selection(namespaces=frozenset({"nowhere"})), []),
    ],
)
def test_filters_keep_only_matching_rows_and_summary_counts_them(
    selection: Selection, expected: list[str]
) -> None:
    doc = build_report(fleet(), CP, selection=selection, now=NOW)
    assert [r["name"] for r in doc["vmis"]] == expected
    assert doc["summary"]["vmis"] == len(expected)
    assert doc["selection"]["namespaces"] == sorted(selection.namespaces)


def test_exit_code_is_1_when_a_vmi_needs_a_human() -> None:
    for action in ("migrate", "restart", "manual"):
        doc = build_report([view(action=action, method="none")], CP, now=NOW)
        assert exit_code(doc) == 1, action


def test_exit_code_is_0_when_automation_handles_everything_or_nothing_is_outdated() -> None:
    assert exit_code(build_report([view(), view("b", method="evict")], CP, now=NOW)) == 0
    assert exit_code(build_report([], CP, now=NOW)) == 0
    not_outdated = view(outdated=False, outdated_reason=None, action="manual", method="none")
    assert exit_code(build_report([not_outdated], CP, now=NOW)) == 0


def test_exit_code_follows_the_filtered_rows() -> None:
    doc = build_report(fleet(), CP, selection=Selection(actions=frozenset({"wait"})), now=NOW)
    assert exit_code(doc) == 0


# -- summary, header and advice -----------------------------------------------------------------


def test_summary_counts_every_method_and_action_including_zero() -> None:
    summary = build_report(fleet(), CP, now=NOW)["summary"]
    assert list(summary["byMethod"]) == list(METHODS)
    assert list(summary["byAction"]) == list(ACTIONS)
    assert summary["byMethod"] == {
        "in_progress": 0,
        "live_migrate": 1,
        "evict": 0,
        "evict_stops": 0,
        "none": 3,
    }
    assert summary["byAction"] == {"wait": 1, "migrate": 1, "restart": 1, "manual": 1}
    assert summary["needsAction"] == 3


def test_header_shows_versions_convergence_methods_and_batch_eviction() -> None:
    table = render_table(build_report(fleet(), CP, now=NOW), now=NOW)
    header = table.split("\n\n")[0]
    assert "kubevirt/kubevirt" in header
    assert "observed v1.5.0, target v1.5.0, converged" in header
    assert "methods: LiveMigrate; batch eviction 10 every 1m0s" in header
    assert "by method: live_migrate 1, none 3" in header
    assert "by action: wait 1, migrate 1, restart 1, manual 1" in header


def test_header_says_when_the_control_plane_is_not_converged() -> None:
    cp = control_plane(kubevirt(phase="Deploying"))
    doc = build_report(fleet(), cp, now=NOW)
    assert "NOT converged (phase Deploying)" in render_table(doc, now=NOW)
    assert doc["controlPlane"]["converged"] is False
    assert any("not converged" in a for a in doc["advice"])


@pytest.mark.parametrize("crs", [0, 2])
def test_without_exactly_one_kubevirt_cr_the_header_says_nothing_is_updated(crs: int) -> None:
    kvs = [kubevirt(name=f"kv-{i}") for i in range(crs)]
    doc = build_report(fleet(), control_plane(crs=crs), kubevirts=kvs, now=NOW)
    table = render_table(doc, now=NOW)
    assert f"{crs} KubeVirt CRs" in table
    assert "upstream will not update anything" in table
    assert doc["controlPlane"]["kubevirtCRs"] == crs
    assert doc["controlPlane"]["updateMethods"] == []
    assert doc["controlPlane"]["observedVersion"] is None
    assert len(doc["controlPlane"]["kubevirts"]) == crs
    assert "will not update" in doc["advice"][0]
    if crs == 2:
        assert "kubevirt/kv-0, kubevirt/kv-1" in table


def test_advice_points_at_the_hyperconverged_cr_on_hco_clusters() -> None:
    cp = control_plane(kubevirt(methods=(), hco=True, name="kubevirt-kubevirt-hyperconverged"))
    advice = " ".join(build_report(fleet(), cp, now=NOW)["advice"])
    assert "edit the HyperConverged CR" in advice
    assert "spec.workloadUpdateStrategy" in advice
    assert "the KubeVirt CR kubevirt/" not in advice


def test_advice_points_at_the_kubevirt_cr_on_plain_clusters() -> None:
    cp = control_plane(kubevirt(methods=()))
    advice = " ".join(build_report(fleet(), cp, now=NOW)["advice"])
    assert "edit the KubeVirt CR kubevirt/kubevirt (spec.workloadUpdateStrategy)" in advice
    assert "HyperConverged" not in advice


def test_advice_names_the_next_step_per_action_and_never_stopping_the_vm() -> None:
    doc = build_report(fleet(), CP, now=NOW)
    advice = " ".join(doc["advice"])
    assert "kubevirt-update-exporter plan | kubectl create -f -" in advice
    assert "virtctl restart" in advice
    assert "by hand" in advice
    for text in (render_table(doc, now=NOW), render_json(doc)):
        assert "virtctl stop" not in text


def test_advice_names_vmis_whose_update_migrations_keep_failing() -> None:
    views = [view("flaky", update_migration_failures=3), view("fine")]
    advice = build_report(views, CP, now=NOW)["advice"]
    assert any("keep failing for 1 VMI (default/flaky)" in a for a in advice)
    row = build_report(views, CP, now=NOW)["vmis"][1]
    assert (row["name"], row["updateMigrationFailures"]) == ("flaky", 3)


def test_advice_says_to_wait_when_automation_updates_every_row() -> None:
    doc = build_report([view(), view("b", method="in_progress")], CP, now=NOW)
    assert doc["advice"] == [
        "Automation is updating every outdated VMI listed; nothing to do but wait."
    ]


# -- preflight ----------------------------------------------------------------------------------


def test_preflight_lists_every_running_vmi_outdated_or_not() -> None:
    doc = build_report(fleet(), CP, preflight=True, now=NOW)
    assert doc["preflight"] is True
    assert [r["name"] for r in doc["vmis"]] == ["db", "pet", "fresh", "vm-a", "vm-b"]
    fresh = doc["vmis"][2]
    assert (fresh["outdated"], fresh["method"], fresh["action"]) == (False, "live_migrate", "wait")


def test_preflight_table_lists_the_vmis_nothing_would_move_and_why() -> None:
    views = [
        view("mover"),
        view(
            "sticky",
            live_migratable=False,
            not_migratable_reason="HostDeviceNotLiveMigratable",
            method="none",
            action="restart",
        ),
        view("stopper", method="evict_stops", action="manual", run_strategy="Halted"),
    ]
    cp = control_plane(kubevirt(methods=("LiveMigrate", "Evict")))
    table = render_table(build_report(views, cp, preflight=True, now=NOW), now=NOW)
    stuck_part = table.split("Nothing would move 2 VMIs after an upgrade:")[1]
    assert "default/sticky: LiveMigrate skips it (not live-migratable" in stuck_part
    assert "HostDeviceNotLiveMigratable" in stuck_part
    assert "default/stopper: Evict deletes the launcher pod" in stuck_part
    assert "mover" not in stuck_part


def test_preflight_exit_code_says_whether_an_upgrade_would_need_a_human() -> None:
    fine = build_report([view(outdated=False)], CP, preflight=True, now=NOW)
    assert exit_code(fine) == 0
    needs = build_report([stuck("x", outdated=False)], CP, preflight=True, now=NOW)
    assert exit_code(needs) == 1


def test_preflight_without_update_methods_says_so() -> None:
    cp = control_plane(kubevirt(methods=()))
    doc = build_report([stuck("x", outdated=False)], cp, preflight=True, now=NOW)
    assert "no workloadUpdateMethods configured" in doc["vmis"][0]["why"]
    assert any("nothing moves 1 Running VMI:" in a for a in doc["advice"])


# -- output formats -----------------------------------------------------------------------------

ROW_TYPES: dict[str, tuple[type, ...]] = {
    "namespace": (str,),
    "name": (str,),
    "node": (str,),
    "phase": (str,),
    "outdated": (bool,),
    "reason": (str, type(None)),
    "liveMigratable": (bool,),
    "notLiveMigratableReason": (str, type(None)),
    "method": (str,),
    "action": (str,),
    "vm": (str, type(None)),
    "runStrategy": (str, type(None)),
    "evictionStrategy": (str,),
    "launcherImage": (str,),
    "outdatedSince": (str, type(None)),
    "updateMigrationFailures": (int,),
    "why": (str,),
}


def assert_schema(doc: dict[str, Any]) -> None:
    """The documented schema of docs/cli.md, checked on a parsed document."""
    assert list(doc) == [
        "apiVersion",
        "kind",
        "generatedAt",
        "preflight",
        "selection",
        "source",
        "controlPlane",
        "summary",
        "advice",
        "vmis",
    ]
    assert set(doc["source"]) == {"snapshot", "missingKinds", "skipped"}
    assert (doc["apiVersion"], doc["kind"]) == (API_VERSION, KIND)
    assert isinstance(doc["generatedAt"], str) and doc["generatedAt"].endswith("Z")
    assert set(doc["selection"]) == {"namespaces", "actions", "methods"}
    assert set(doc["controlPlane"]) == {
        "kubevirtCRs",
        "kubevirts",
        "observedVersion",
        "targetVersion",
        "phase",
        "converged",
        "updateMethods",
        "batchEvictionSize",
        "batchEvictionIntervalSeconds",
        "evictionStrategy",
        "parallelMigrationsPerCluster",
        "targetLauncherImage",
        "hcoManaged",
    }
    assert set(doc["summary"]) == {"vmis", "needsAction", "byMethod", "byAction"}
    assert all(isinstance(a, str) for a in doc["advice"])
    for row in doc["vmis"]:
        assert set(row) == set(ROW_TYPES)
        for key, types in ROW_TYPES.items():
            assert isinstance(row[key], types), (key, row[key])
        assert row["method"] in METHODS and row["action"] in ACTIONS


def test_json_output_parses_back_to_the_documented_schema() -> None:
    doc = build_report(fleet(), CP, now=NOW)
    parsed = json.loads(render_json(doc))
    assert_schema(parsed)
    assert parsed == doc


def test_yaml_output_parses_back_to_the_same_document_as_json() -> None:
    doc = build_report(fleet(), CP, preflight=True, now=NOW)
    parsed = yaml.safe_load(render_yaml(doc))
    assert_schema(parsed)
    assert parsed == json.loads(render_json(doc))


def test_table_has_one_line_per_vmi_with_every_column() -> None:
    table = render_table(build_report(fleet(), CP, now=NOW), now=NOW)
    lines = table.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("NAMESPACE"))
    assert lines[head].split() == [
        "NAMESPACE",
        "NAME",
        "NODE",
        "REASON",
        "MIGRATABLE",
        "METHOD",
        "ACTION",
        "RUN",
        "SINCE",
    ]
    rows = [line.split() for line in lines[head + 1 : head + 5]]
    assert rows[1] == [
        "dev",
        "pet",
        "node-1",
        "image",
        "no:HostDevice",
        "none",
        "manual",
        "-",
        "3h",
    ]
    assert rows[2] == [
        "prod",
        "vm-a",
        "node-1",
        "image",
        "no:Disks",
        "none",
        "restart",
        "Always",
        "3h",
    ]
    assert rows[3][4] == "yes"


def test_table_fits_its_width_by_leaving_out_columns_never_by_cutting_names() -> None:
    long = view(
        "postgres-primary-with-a-really-long-descriptive-name-0",
        "team-payments-production-europe-west",
        node="worker-node-17.datacenter-3.example.internal",
        outdated_reason="migration_required",
        live_migratable=False,
        not_migratable_reason="CPUModeLiveMigratable",
        method="evict_stops",
        action="restart",
        run_strategy="RerunOnFailure",
    )
    table = render_table(build_report([long, view()], CP, now=NOW), now=NOW, width=100)
    assert "~" not in table
    lines = table.splitlines()
    row = next(line for line in lines if line.startswith("team"))
    assert row.split()[:2] == [long.namespace, long.name]
    assert max(len(line) for line in lines if line.startswith(("NAMESPACE", "team"))) <= 100
    assert "left out to fit 100 columns; `-o wide` shows every column" in " ".join(lines)
    wide = render_table(build_report([long, view()], CP, now=NOW), now=NOW, wide=True)
    for cell in ("migration", "no:CPUMode", "evict_stops", "restart", "RerunOnFailure", "3h"):
        assert cell in next(line for line in wide.splitlines() if line.startswith("team")).split()
    assert "WHY" in wide.splitlines()[wide.splitlines().index("") + 1]


def test_table_says_when_no_vmi_is_outdated() -> None:
    assert "No outdated VMIs." in render_table(build_report([], CP, now=NOW), now=NOW)
    filtered = build_report(fleet(), CP, selection=Selection(namespaces=frozenset({"x"})), now=NOW)
    assert "No outdated VMIs match the filters." in render_table(filtered, now=NOW)


# -- end to end: the command on a snapshot --------------------------------------------------------


def write_snapshot(path: Path, objects: list[dict[str, Any]]) -> Path:
    """A `kubectl get -o yaml` style List holding `objects`."""
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects}))
    return path


def fleet_objects(*, methods: tuple[str, ...] = (), hco: bool = False) -> list[dict[str, Any]]:
    """prod/web (migratable), prod/db (not migratable), dev/pet (standalone), dev/fresh (current
    image), all but fresh outdated; parallelMigrationsPerCluster 3 with one migration running."""
    old: dict[str, Any] = {"launcher_image": builders.OLD_IMAGE, "outdated_label": True}
    return [
        builders.kubevirt(update_methods=methods, hco=hco, parallel_migrations_per_cluster=3),
        builders.vmi("web", "prod", node="node-a", **old),
        builders.vm("web", "prod"),
        builders.vmi("db", "prod", node="node-b", live_migratable=False, **old),
        builders.vm("db", "prod"),
        builders.vmi("pet", "dev", owner_vm=None, live_migratable=False, **old),
        builders.vmi("fresh", "dev"),
        builders.vm("fresh", "dev"),
        builders.vmim("busy", "prod", vmi_name="elsewhere", phase="Running"),
    ]


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "fleet.yaml", fleet_objects())


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_report_json_on_a_snapshot_lists_each_outdated_vmi_with_its_action(
    snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["report", "--snapshot", str(snapshot), "-o", "json"], capsys)
    doc = json.loads(out)
    assert_schema(doc)
    assert code == 1, err
    rows = {(r["namespace"], r["name"]): r for r in doc["vmis"]}
    assert {k: (r["method"], r["action"]) for k, r in rows.items()} == {
        ("prod", "web"): ("none", "migrate"),
        ("prod", "db"): ("none", "restart"),
        ("dev", "pet"): ("none", "manual"),
    }
    assert rows[("prod", "db")]["notLiveMigratableReason"] == "DisksNotLiveMigratable"
    assert rows[("prod", "web")]["node"] == "node-a"
    assert rows[("prod", "web")]["outdatedSince"] == builders.AVAILABLE_SINCE
    assert (rows[("dev", "pet")]["vm"], rows[("prod", "db")]["vm"]) == (None, "db")
    assert doc["controlPlane"]["kubevirts"] == [{"namespace": "kubevirt", "name": "kubevirt"}]
    assert doc["controlPlane"]["parallelMigrationsPerCluster"] == 3


def test_cli_report_yaml_and_table_on_a_snapshot(
    snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, as_json, _ = run_cli(["report", "--snapshot", str(snapshot), "-o", "json"], capsys)
    code, as_yaml, _ = run_cli(["report", "--snapshot", str(snapshot), "-o", "yaml"], capsys)
    expected, parsed = json.loads(as_json), yaml.safe_load(as_yaml)
    expected.pop("generatedAt"), parsed.pop("generatedAt")
    assert (code, parsed) == (1, expected)
    code, table, _ = run_cli(["report", "--snapshot", str(snapshot)], capsys)
    assert code == 1
    assert "edit the KubeVirt CR kubevirt/kubevirt" in " ".join(table.split())
    for name in ("web", "db", "pet"):
        assert any(line.split()[1:2] == [name] for line in table.splitlines())
    assert max(len(line) for line in table.splitlines()) <= 100


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--namespace", "dev"], ["pet"]),
        (["--action", "restart", "--action", "manual"], ["pet", "db"]),
        (["--namespace", "prod", "--method", "none", "--action", "migrate"], ["web"]),
    ],
)
def test_cli_report_filters(
    snapshot: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: list[str]
) -> None:
    code, out, _ = run_cli(["report", "--snapshot", str(snapshot), "-o", "json", *flags], capsys)
    assert [r["name"] for r in json.loads(out)["vmis"]] == expected
    assert code == 1


def test_cli_report_exits_0_when_the_filtered_rows_need_nobody(
    snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["report", "--snapshot", str(snapshot), "--method", "evict"], capsys)
    assert code == 0
    assert "No outdated VMIs match the filters." in out


def test_cli_report_exits_0_when_automation_updates_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = [
        builders.kubevirt(update_methods=("LiveMigrate",)),
        builders.vmi("web", launcher_image=builders.OLD_IMAGE, outdated_label=True),
        builders.vm("web"),
    ]
    path = write_snapshot(tmp_path / "ok.yaml", objects)
    code, out, _ = run_cli(["report", "--snapshot", str(path), "-o", "json"], capsys)
    assert code == 0
    assert [(r["method"], r["action"]) for r in json.loads(out)["vmis"]] == [
        ("live_migrate", "wait")
    ]


def test_cli_preflight_covers_every_running_vmi(
    snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        ["report", "--snapshot", str(snapshot), "--preflight", "-o", "json"], capsys
    )
    doc = json.loads(out)
    assert doc["preflight"] is True
    assert sorted(r["name"] for r in doc["vmis"]) == ["db", "fresh", "pet", "web"]
    fresh = next(r for r in doc["vmis"] if r["name"] == "fresh")
    assert (fresh["outdated"], fresh["method"], fresh["action"]) == (False, "none", "migrate")
    assert "no workloadUpdateMethods configured" in fresh["why"]
    assert code == 1
    _, table, _ = run_cli(["report", "--snapshot", str(snapshot), "--preflight"], capsys)
    assert "Nothing would move 4 VMIs after an upgrade:" in table


def test_cli_report_on_an_hco_cluster_advises_the_hyperconverged_cr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_snapshot(tmp_path / "hco.yaml", fleet_objects(hco=True))
    _, out, _ = run_cli(["report", "--snapshot", str(path), "-o", "json"], capsys)
    doc = json.loads(out)
    assert doc["controlPlane"]["hcoManaged"] is True
    assert any("edit the HyperConverged CR" in a for a in doc["advice"])


@pytest.mark.parametrize("crs", [0, 2])
def test_cli_report_header_says_when_there_is_not_exactly_one_kubevirt_cr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], crs: int
) -> None:
    objects = [o for o in fleet_objects() if o["kind"] != "KubeVirt"]
    objects += [builders.kubevirt(name=f"kv-{i}") for i in range(crs)]
    path = write_snapshot(tmp_path / "crs.yaml", objects)
    # Captured, and empty: a typed list says so where kubectl's untyped List cannot.
    with path.open("a") as text:
        text.write("---\napiVersion: kubevirt.io/v1\nkind: KubeVirtList\nitems: []\n")
    code, out, _ = run_cli(["report", "--snapshot", str(path)], capsys)
    assert f"KubeVirt:  {crs} KubeVirt CRs" in out
    assert "upstream will not update anything" in out
    assert code == 1


def test_cli_report_leaves_out_a_malformed_object_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = builders.vmi("broken", "prod", launcher_image=builders.OLD_IMAGE, outdated_label=True)
    broken["status"]["phase"] = 7
    path = write_snapshot(tmp_path / "bad.yaml", [*fleet_objects(), broken])
    code, out, err = run_cli(["report", "--snapshot", str(path), "-o", "json"], capsys)
    assert code == 1
    assert "broken" not in {r["name"] for r in json.loads(out)["vmis"]}
    assert "virtualmachineinstances prod/broken: status.phase" in err


def test_cli_report_takes_the_snapshot_from_the_environment_twin(
    snapshot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEVIRT_UPDATE_EXPORTER_SNAPSHOT", str(snapshot))
    monkeypatch.setenv("KUBEVIRT_UPDATE_EXPORTER_NAMESPACE", "dev")
    code, out, _ = run_cli(["report", "-o", "json"], capsys)
    assert [r["name"] for r in json.loads(out)["vmis"]] == ["pet"]
    assert code == 1


def test_cli_report_exits_3_when_the_snapshot_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_text("items: [unclosed\n")
    code, out, err = run_cli(["report", "--snapshot", str(path)], capsys)
    assert (code, out) == (3, "")
    assert "garbage.yaml" in err


def test_cli_report_exits_3_when_the_cluster_cannot_be_reached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    code, out, err = run_cli(["report", "--kubeconfig", str(kubeconfig)], capsys)
    assert (code, out) == (3, "")
    assert "cannot read the cluster" in err and "127.0.0.1:1" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "--method", "sometimes"],
        ["report", "--action", "pray"],
        ["report", "-o", "xml"],
    ],
)
def test_cli_report_rejects_bad_flags_with_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(argv, capsys)
    assert (code, out) == (2, "")
    assert f"={argv[-1]!r}: expected one of " in err


def test_cli_report_rejects_bad_settings_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        ["report", "--snapshot", str(tmp_path / "missing.yaml"), "--namespace", "Bad_NS"], capsys
    )
    assert (code, out) == (2, "")
    assert "missing.yaml" in err and "Bad_NS" in err


def test_docs_cli_md_documents_every_field_of_the_schema_and_every_exit_code() -> None:
    docs = (REPO / "docs" / "cli.md").read_text()
    doc = build_report([view()], CP, now=NOW)
    keys = [
        *doc,
        *doc["selection"],
        *doc["controlPlane"],
        *doc["summary"],
        *doc["vmis"][0],
    ]
    missing = [key for key in keys if f"`{key}`" not in docs]
    assert not missing, f"docs/cli.md does not document {missing}"
    assert f"`{API_VERSION}`" in docs and f"`{KIND}`" in docs
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |"):
        assert code in docs

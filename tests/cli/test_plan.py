"""`plan`: migrations in batches, restart and manual steps, pipeable to `kubectl create -f -`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import main
from exporter.model import Vmim, VmiView
from exporter.plan import (
    BATCH_LABEL,
    DEFAULT_PARALLEL_MIGRATIONS,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    Plan,
    batch_sizing,
    build_plan,
    comment,
    generate_name,
    interleave_by_node,
    migration_manifest,
    render_plan,
)
from exporter.selection import Selection
from tests import builders
from tests.cli.test_report import (
    CP,
    NOW,
    control_plane,
    fleet_objects,
    kubevirt,
    stuck,
    view,
    write_snapshot,
)

#: metadata.name / generateName as the API server validates them (a DNS-1123 subdomain).
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def migrating_vmis(count: int, *, namespace: str = "default", nodes: int = 1) -> list[VmiView]:
    return [
        view(f"vm-{i:02d}", namespace, node=f"node-{i % nodes}", method="none", action="migrate")
        for i in range(count)
    ]


def vmim(phase: str, name: str = "m") -> Vmim:
    return Vmim(namespace="default", name=name, vmi_name="x", phase=phase, workload_update=False)


def documents(text: str) -> list[Any]:
    """The YAML documents of a plan, as `kubectl create -f -` sees them (empty ones dropped)."""
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def prose(text: str) -> str:
    """The comments of a plan as one line of text (wrapping undone)."""
    return " ".join(line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#"))


def assert_vmim_shape(doc: dict[str, Any]) -> None:
    """A VirtualMachineInstanceMigration `kubectl create` accepts, marked as ours."""
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert (doc["apiVersion"], doc["kind"]) == ("kubevirt.io/v1", "VirtualMachineInstanceMigration")
    meta = doc["metadata"]
    assert set(meta) == {"generateName", "namespace", "labels", "annotations"}
    assert meta["generateName"].startswith("kubevirt-update-exporter-")
    assert len(meta["generateName"]) + 5 <= 63
    assert DNS_SUBDOMAIN.fullmatch(meta["generateName"] + "abcde")
    assert meta["labels"][MANAGED_BY_LABEL] == MANAGED_BY
    assert meta["labels"][BATCH_LABEL].isdigit()
    assert all(isinstance(v, str) for v in meta["labels"].values())
    assert set(doc["spec"]) == {"vmiName"}


# -- batch size ---------------------------------------------------------------------------------


def test_batch_size_defaults_to_parallel_migrations_per_cluster() -> None:
    sizing = batch_sizing(control_plane(kubevirt(parallel=8)), [], explicit=None)
    assert (sizing.size, sizing.budget, sizing.running) == (8, 8, 0)


def test_batch_size_defaults_to_5_when_the_cluster_does_not_set_it() -> None:
    assert DEFAULT_PARALLEL_MIGRATIONS == 5
    assert batch_sizing(CP, [], explicit=None).size == 5
    assert batch_sizing(control_plane(crs=0), [], explicit=None).size == 5


def test_batch_size_subtracts_migrations_not_finished_yet() -> None:
    migrations = [vmim("Running", "a"), vmim("Scheduling", "b"), vmim("", "c")]
    finished = [vmim("Succeeded", "d"), vmim("Failed", "e")]
    sizing = batch_sizing(control_plane(kubevirt(parallel=5)), migrations + finished, explicit=None)
    assert (sizing.size, sizing.running) == (2, 3)
    assert not sizing.all_busy


def test_batch_size_never_drops_below_1_and_says_every_slot_is_busy() -> None:
    busy = [vmim("Running", str(i)) for i in range(7)]
    sizing = batch_sizing(control_plane(kubevirt(parallel=5)), busy, explicit=None)
    assert sizing.size == 1 and sizing.all_busy
    plan = build_plan(migrating_vmis(2), control_plane(kubevirt(parallel=5)), busy, now=NOW)
    text = render_plan(plan)
    assert "Every migration slot is busy now" in prose(text)
    assert [len(b) for b in plan.batches] == [1, 1]


def test_a_cluster_limit_of_0_counts_as_every_slot_busy() -> None:
    sizing = batch_sizing(control_plane(kubevirt(parallel=0)), [], explicit=None)
    assert (sizing.size, sizing.budget, sizing.all_busy) == (1, 0, True)


def test_explicit_batch_size_wins_and_ignores_running_migrations() -> None:
    sizing = batch_sizing(CP, [vmim("Running")], explicit=3)
    assert (sizing.size, sizing.explicit) == (3, True)
    with pytest.raises(ValueError, match="--batch-size"):
        batch_sizing(CP, [], explicit=0)


# -- the plan -----------------------------------------------------------------------------------


def test_migrations_come_in_batches_no_larger_than_the_batch_size() -> None:
    plan = build_plan(migrating_vmis(12), control_plane(kubevirt(parallel=5)), [], now=NOW)
    assert [len(b) for b in plan.batches] == [5, 5, 2]
    docs = documents(render_plan(plan))
    assert len(docs) == 12
    batches = [int(d["metadata"]["labels"][BATCH_LABEL]) for d in docs]
    assert batches == [1] * 5 + [2] * 5 + [3] * 2


def test_every_document_of_the_plan_is_a_valid_vmim_for_its_vmi() -> None:
    long_name = view("long-" + "x" * 80, method="none", action="migrate")
    views = [*migrating_vmis(3, namespace="prod"), long_name]
    docs = documents(render_plan(build_plan(views, CP, [], now=NOW)))
    for doc in docs:
        assert_vmim_shape(doc)
    assert sorted((d["metadata"]["namespace"], d["spec"]["vmiName"]) for d in docs) == sorted(
        (v.namespace, v.name) for v in views
    )


def test_batch_boundaries_are_yaml_comments() -> None:
    text = render_plan(build_plan(migrating_vmis(3), CP, [], batch_size=2, now=NOW))
    assert "# ---- batch 1 of 2: 2 migrations ----" in text
    assert "# ---- batch 2 of 2: 1 migration ----" in text
    for line in text.splitlines():
        assert (
            line.startswith(("#", "---", "apiVersion", "kind", "metadata", "spec", " ")) or not line
        )


def test_only_vmis_that_need_a_human_are_planned() -> None:
    views = [
        view("auto"),
        view("moving", method="in_progress"),
        view("fine", outdated=False, outdated_reason=None, action="migrate", method="none"),
        view("mig", method="none", action="migrate"),
        stuck("rst"),
        stuck("man", action="manual", owner_kind="", run_strategy=""),
    ]
    plan = build_plan(views, CP, [], now=NOW)
    assert [v.name for b in plan.batches for v in b] == ["mig"]
    assert [v.name for v in plan.restarts] == ["rst"]
    assert [v.name for v in plan.manual] == ["man"]
    assert plan.waiting == 2
    assert "Automation is updating 2 more outdated VMIs (not listed)." in prose(render_plan(plan))


def test_restarts_are_virtctl_restart_comments_with_the_spec_change_warning() -> None:
    text = render_plan(build_plan([stuck("db-0", "prod")], CP, [], now=NOW))
    assert "# virtctl restart db-0 -n prod    # DisksNotLiveMigratable" in text
    assert "a restart also applies every pending change of the VM's spec" in prose(text)
    assert documents(text) == []


def test_manual_vmis_are_listed_with_their_reason() -> None:
    views = [
        stuck("pet", action="manual", owner_kind="", run_strategy=""),
        stuck("once", action="manual", run_strategy="Once"),
        stuck("vol", action="manual", outdated_reason="volumes_change"),
    ]
    text = render_plan(build_plan(views, CP, [], now=NOW))
    flat = prose(text)
    assert "default/pet: standalone VMI (not live-migratable: DisksNotLiveMigratable)" in flat
    assert "default/once: runStrategy Once: `virtctl restart` is refused" in flat
    assert "default/vol: a volume change (VolumesChange) is pending" in flat
    assert documents(text) == []


def test_manual_section_points_at_the_hyperconverged_cr_when_nothing_is_enabled() -> None:
    cp = control_plane(kubevirt(methods=(), hco=True))
    text = render_plan(build_plan([stuck("pet", action="manual", owner_kind="")], cp, [], now=NOW))
    assert "edit the HyperConverged CR" in prose(text)


def test_the_plan_never_stops_a_vm() -> None:
    views = [
        *migrating_vmis(2),
        stuck("a"),
        stuck("b", action="manual", run_strategy="Halted"),
        stuck("c", action="manual", run_strategy="Once"),
        stuck("d", action="manual", owner_kind="", run_strategy=""),
        stuck("e", action="manual", run_strategy="WaitAsReceiver"),
    ]
    for cp in (CP, control_plane(crs=2), control_plane(kubevirt(methods=(), hco=True))):
        text = render_plan(build_plan(views, cp, [vmim("Running")], now=NOW))
        assert "virtctl stop" not in text
        assert "stop " not in text.replace("virtctl restart", "")


def test_an_empty_plan_is_comments_only() -> None:
    text = render_plan(build_plan([view(), view("b", outdated=False)], CP, [], now=NOW))
    assert all(line.startswith("#") for line in text.splitlines() if line)
    assert documents(text) == []
    assert "Nothing to do: no outdated VMI needs a human." in prose(text)


def test_namespace_selection_limits_the_plan() -> None:
    views = migrating_vmis(2, namespace="a") + migrating_vmis(3, namespace="b")
    plan = build_plan(views, CP, [], selection=Selection(namespaces=frozenset({"b"})), now=NOW)
    assert {v.namespace for b in plan.batches for v in b} == {"b"}


def test_the_plan_warns_when_the_control_plane_is_not_ready_for_it() -> None:
    unconverged = control_plane(kubevirt(phase="Deploying"))
    assert "control plane is not converged" in prose(
        render_plan(build_plan(migrating_vmis(1), unconverged, [], now=NOW))
    )
    assert "WARNING: 0 KubeVirt CRs" in render_plan(
        build_plan(migrating_vmis(1), control_plane(crs=0), [], now=NOW)
    )


def test_header_comments_say_how_to_apply_one_batch() -> None:
    text = render_plan(build_plan(migrating_vmis(6), CP, [], now=NOW))
    flat = prose(text)
    assert f"kubectl create -f plan.yaml -l {BATCH_LABEL}=1" in flat
    assert "2 batches of at most 5: parallelMigrationsPerCluster 5 minus 0 migrations" in flat


# -- pieces -------------------------------------------------------------------------------------


def test_migrations_are_interleaved_by_source_node() -> None:
    views = [view(f"a{i}", node="node-a") for i in range(3)] + [view("b0", node="node-b")]
    assert [v.name for v in interleave_by_node(views)] == ["a0", "b0", "a1", "a2"]


@pytest.mark.parametrize(
    "vmi_name",
    ["vm", "a" * 32, "a" * 33, "b" * 253, "x" * 31 + "-" + "y" * 40, "x" * 31 + "." + "y" * 40],
)
def test_generate_name_stays_a_valid_prefix_of_at_most_58_characters(vmi_name: str) -> None:
    prefix = generate_name(vmi_name)
    assert prefix.startswith("kubevirt-update-exporter-") and prefix.endswith("-")
    assert len(prefix) <= 58
    assert DNS_SUBDOMAIN.fullmatch(prefix + "k2x9q")
    if len(vmi_name) <= 32:
        assert prefix == f"kubevirt-update-exporter-{vmi_name}-"


def test_migration_manifest_targets_the_vmi_in_its_namespace() -> None:
    manifest = migration_manifest(view("db", "prod", outdated_reason="hotplug_cpu"), batch=4)
    assert manifest == {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {
            "generateName": "kubevirt-update-exporter-db-",
            "namespace": "prod",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, BATCH_LABEL: "4"},
            "annotations": {"kubevirt-update-exporter/reason": "hotplug_cpu"},
        },
        "spec": {"vmiName": "db"},
    }


def test_comment_wraps_and_cannot_be_escaped_by_a_newline() -> None:
    lines = comment("first line\nkind: Secret\n" + "word " * 40)
    assert all(line.startswith("# ") for line in lines)
    assert all(len(line) <= 100 for line in lines)
    assert documents("\n".join(lines)) == []


def test_plan_dataclass_counts_match_its_rendering() -> None:
    plan: Plan = build_plan(migrating_vmis(7, nodes=3), CP, [], batch_size=3, now=NOW)
    text = render_plan(plan)
    assert len(documents(text)) == sum(len(b) for b in plan.batches) == 7
    assert "Migrations: 7, restarts: 0, manual: 0." in prose(text)


# -- end to end: the command on a snapshot --------------------------------------------------------


def test_cli_plan_on_a_snapshot_migrates_restarts_and_lists_manual_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_snapshot(tmp_path / "fleet.yaml", fleet_objects())
    code = main(["plan", "--snapshot", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    docs = documents(out)
    for doc in docs:
        assert_vmim_shape(doc)
    assert [(d["metadata"]["namespace"], d["spec"]["vmiName"]) for d in docs] == [("prod", "web")]
    text = prose(out)
    # parallelMigrationsPerCluster 3 minus the one migration still running
    assert "batch of at most 2: parallelMigrationsPerCluster 3 minus 1 migration" in text
    assert "virtctl restart db -n prod" in out
    assert "dev/pet: standalone VMI" in text
    assert "virtctl stop" not in out


def test_cli_plan_batch_size_flag_overrides_the_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = [
        builders.kubevirt(update_methods=(), parallel_migrations_per_cluster=10),
        *(
            builders.vmi(f"vm-{i}", launcher_image=builders.OLD_IMAGE, outdated_label=True)
            for i in range(5)
        ),
        *(builders.vm(f"vm-{i}") for i in range(5)),
    ]
    path = write_snapshot(tmp_path / "five.yaml", objects)
    assert main(["plan", "--snapshot", str(path), "--batch-size", "2"]) == 1
    docs = documents(capsys.readouterr().out)
    assert [d["metadata"]["labels"][BATCH_LABEL] for d in docs] == ["1", "1", "2", "2", "3"]
    assert main(["plan", "--snapshot", str(path)]) == 1
    docs = documents(capsys.readouterr().out)
    assert {d["metadata"]["labels"][BATCH_LABEL] for d in docs} == {"1"}


def test_cli_plan_is_empty_and_exits_0_when_nothing_needs_a_human(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = [builders.kubevirt(), builders.vmi("web"), builders.vm("web")]
    path = write_snapshot(tmp_path / "fine.yaml", objects)
    assert main(["plan", "--snapshot", str(path)]) == 0
    out = capsys.readouterr().out
    assert documents(out) == []
    assert all(line.startswith("#") for line in out.splitlines() if line)


def test_cli_plan_rejects_a_batch_size_below_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--batch-size", "0"]) == 2
    assert "--batch-size='0': expected an integer >= 1" in capsys.readouterr().err


def test_cli_plan_exits_3_when_the_snapshot_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"kind": "List", "items": [')
    assert main(["plan", "--snapshot", str(path)]) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and "bad.json" in captured.err

"""docs/semantics.md, one row per rule: raw objects in (tests/builders.py), view fields out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from exporter.derive import control_plane, derive, effective_run_strategy
from exporter.model import CONDITION_MISSING, KubeVirt, VmiView
from exporter.objects import project_kubevirt, project_vm, project_vmi, project_vmim
from exporter.timeparse import parse_rfc3339
from tests import builders as b

Raw = dict[str, Any]

RUNNING_SINCE = parse_rfc3339(b.RUNNING_SINCE)
AVAILABLE_SINCE = parse_rfc3339(b.AVAILABLE_SINCE)
CHANGED_AT = parse_rfc3339(b.CHANGED_AT)

#: The default owner: a VM named like the default VMI, runStrategy Always.
OWNER = b.vm()
#: Plain install: virtLauncherImage absent, so only the rebuilt target is known.
PLAIN_CONFIG = b.deployment_config(launcher_image=None)


def row(
    claim: str,
    *,
    vmi: Raw,
    expect: Mapping[str, object],
    vm: Raw | None = OWNER,
    vmims: Sequence[Raw] = (),
    kubevirts: Sequence[Raw] | None = None,
) -> Any:
    """One rule: the objects, and the view fields they must give."""
    kvs = (b.kubevirt(),) if kubevirts is None else tuple(kubevirts)
    return pytest.param(vmi, vm, tuple(vmims), kvs, dict(expect), id=claim)


def kv(*, methods: Sequence[str] = ("LiveMigrate",), **kwargs: Any) -> Raw:
    return b.kubevirt(update_methods=methods, **kwargs)


def view_of(vmi: Raw, vm: Raw | None, vmims: Sequence[Raw], kubevirts: Sequence[Raw]) -> VmiView:
    cp = control_plane(project_kubevirt(raw) for raw in kubevirts)
    return derive(
        project_vmi(vmi),
        vm=None if vm is None else project_vm(vm),
        migrations=[project_vmim(raw) for raw in vmims],
        cp=cp,
    )


EVICT = ("Evict",)

RULES = [
    # --- image-outdated ---------------------------------------------------------------------
    row(
        "outdated-label-makes-a-running-vmi-outdated-by-launcher-image",
        vmi=b.vmi(outdated_label=True, launcher_image=b.OLD_IMAGE),
        expect={"outdated": True, "outdated_reason": "launcher_image"},
    ),
    row(
        "outdated-label-is-primary-even-when-the-image-equals-the-exact-target",
        vmi=b.vmi(outdated_label=True, launcher_image=b.TARGET_IMAGE),
        expect={"outdated": True, "outdated_reason": "launcher_image"},
    ),
    row(
        "image-other-than-the-exact-target-is-outdated-without-the-label",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        expect={"outdated": True, "outdated_reason": "launcher_image"},
    ),
    row(
        "image-equal-to-the-exact-target-without-label-is-current",
        vmi=b.vmi(launcher_image=b.TARGET_IMAGE),
        expect={"outdated": False, "outdated_reason": None, "outdated_since": None},
    ),
    row(
        "empty-launcher-image-is-never-outdated-even-with-the-label",
        vmi=b.vmi(outdated_label=True, launcher_image=None),
        expect={"outdated": False, "outdated_reason": None},
    ),
    row(
        "unknown-target-and-no-label-is-current",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        kubevirts=[kv(observed_deployment_config="")],
        expect={"outdated": False, "verdict_disagreement": False},
    ),
    # --- rebuilt-image cross-check ------------------------------------------------------------
    row(
        "rebuilt-image-never-makes-a-vmi-outdated-but-flags-the-disagreement",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        kubevirts=[kv(observed_deployment_config=PLAIN_CONFIG)],
        expect={"outdated": False, "verdict_disagreement": True},
    ),
    row(
        "label-on-a-vmi-running-the-rebuilt-target-is-a-disagreement-and-still-outdated",
        vmi=b.vmi(outdated_label=True, launcher_image=b.TARGET_IMAGE),
        kubevirts=[kv(observed_deployment_config=PLAIN_CONFIG)],
        expect={"outdated": True, "verdict_disagreement": True},
    ),
    row(
        "label-and-rebuilt-image-agreeing-is-no-disagreement",
        vmi=b.vmi(outdated_label=True, launcher_image=b.OLD_IMAGE),
        kubevirts=[kv(observed_deployment_config=PLAIN_CONFIG)],
        expect={"outdated": True, "verdict_disagreement": False},
    ),
    row(
        "known-exact-target-leaves-no-room-for-a-disagreement",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        expect={"outdated": True, "verdict_disagreement": False},
    ),
    row(
        "no-disagreement-while-the-control-plane-is-not-converged",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        kubevirts=[kv(observed_deployment_config=PLAIN_CONFIG, target_deployment_id="deploy-next")],
        expect={"verdict_disagreement": False},
    ),
    row(
        "no-disagreement-for-a-vmi-that-is-not-running",
        vmi=b.vmi(phase="Scheduled", launcher_image=b.OLD_IMAGE),
        kubevirts=[kv(observed_deployment_config=PLAIN_CONFIG)],
        expect={"verdict_disagreement": False},
    ),
    # --- change-outdated ------------------------------------------------------------------------
    row(
        "hot-vcpu-change-makes-a-vmi-outdated-by-hotplug-cpu",
        vmi=b.vmi(changes=["HotVCPUChange"], change_status="False"),
        expect={"outdated": True, "outdated_reason": "hotplug_cpu"},
    ),
    row(
        "hot-memory-change-true-makes-a-vmi-outdated-by-hotplug-memory",
        vmi=b.vmi(changes=["HotMemoryChange"]),
        expect={"outdated": True, "outdated_reason": "hotplug_memory"},
    ),
    row(
        "hot-memory-change-false-is-not-outdated",
        vmi=b.vmi(changes=["HotMemoryChange"], change_status="False"),
        expect={"outdated": False},
    ),
    row(
        "migration-required-true-makes-a-vmi-outdated-by-migration-required",
        vmi=b.vmi(changes=["MigrationRequired"]),
        expect={"outdated": True, "outdated_reason": "migration_required"},
    ),
    row(
        "volumes-change-true-makes-a-vmi-outdated-by-volumes-change",
        vmi=b.vmi(changes=["VolumesChange"]),
        expect={"outdated": True, "outdated_reason": "volumes_change"},
    ),
    row(
        "pending-change-is-not-outdated-while-the-vmi-migrates",
        vmi=b.vmi(changes=["HotVCPUChange"], migration=b.migration_state()),
        expect={"outdated": False, "outdated_reason": None, "method": "in_progress"},
    ),
    row(
        "outdated-image-stays-outdated-while-the-vmi-migrates",
        vmi=b.vmi(outdated_label=True, launcher_image=b.OLD_IMAGE, migration=b.migration_state()),
        expect={"outdated": True, "outdated_reason": "launcher_image", "method": "in_progress"},
    ),
    # --- outdated gate and reason order ---------------------------------------------------------
    row(
        "vmi-that-is-not-running-is-never-outdated",
        vmi=b.vmi(phase="Scheduled", outdated_label=True, launcher_image=b.OLD_IMAGE),
        expect={"outdated": False, "outdated_reason": None},
    ),
    row(
        "vmi-being-deleted-is-never-outdated",
        vmi=b.vmi(outdated_label=True, launcher_image=b.OLD_IMAGE, deletion_timestamp=b.CHANGED_AT),
        expect={"outdated": False, "outdated_reason": None},
    ),
    row(
        "launcher-image-comes-before-any-pending-change",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE, changes=["HotVCPUChange"]),
        expect={"outdated_reason": "launcher_image"},
    ),
    row(
        "hotplug-memory-comes-before-volumes-change",
        vmi=b.vmi(changes=["VolumesChange", "HotMemoryChange"]),
        expect={"outdated_reason": "hotplug_memory"},
    ),
    # --- live-migratable ----------------------------------------------------------------------
    row(
        "live-migratable-condition-true-is-migratable",
        vmi=b.vmi(live_migratable=True),
        expect={"live_migratable": True, "not_migratable_reason": None},
    ),
    row(
        "live-migratable-false-reports-the-conditions-reason",
        vmi=b.vmi(live_migratable=False, not_migratable_reason="InterfaceNotLiveMigratable"),
        expect={"live_migratable": False, "not_migratable_reason": "InterfaceNotLiveMigratable"},
    ),
    row(
        "missing-live-migratable-condition-is-condition-missing",
        vmi=b.vmi(live_migratable=None),
        expect={"live_migratable": False, "not_migratable_reason": CONDITION_MISSING},
    ),
    # --- owner, run strategy, eviction strategy -------------------------------------------------
    row(
        "vm-owned-vmi-reports-the-vms-run-strategy",
        vmi=b.vmi(),
        vm=b.vm(run_strategy="RerunOnFailure"),
        expect={"owner_kind": "VirtualMachine", "run_strategy": "RerunOnFailure"},
    ),
    row(
        "standalone-vmi-has-no-owner-kind-and-no-run-strategy",
        vmi=b.vmi(owner_vm=None),
        vm=None,
        expect={"owner_kind": "", "run_strategy": ""},
    ),
    row(
        "vmi-spec-eviction-strategy-wins-over-the-kubevirt-one",
        vmi=b.vmi(eviction_strategy="External"),
        kubevirts=[kv(eviction_strategy="LiveMigrate")],
        expect={"eviction_strategy": "External"},
    ),
    row(
        "kubevirt-eviction-strategy-applies-when-the-vmi-sets-none",
        vmi=b.vmi(),
        kubevirts=[kv(eviction_strategy="LiveMigrateIfPossible")],
        expect={"eviction_strategy": "LiveMigrateIfPossible"},
    ),
    row(
        "eviction-strategy-is-none-when-nothing-sets-it",
        vmi=b.vmi(),
        expect={"eviction_strategy": "None"},
    ),
    # --- method 1: in progress ------------------------------------------------------------------
    row(
        "migration-state-started-and-not-ended-is-in-progress",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE, migration=b.migration_state()),
        expect={"method": "in_progress", "action": "wait", "migrating": True},
    ),
    row(
        "unfinished-vmim-for-the-vmi-is-in-progress",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE, live_migratable=False),
        vmims=[b.vmim(phase="Scheduling")],
        expect={"method": "in_progress", "action": "wait", "migrating": True},
    ),
    row(
        "vmim-without-a-phase-yet-is-in-progress",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        vmims=[b.vmim(phase=None)],
        expect={"method": "in_progress", "migrating": True},
    ),
    row(
        "finished-vmims-and-ended-migration-state-are-not-in-progress",
        vmi=b.vmi(
            launcher_image=b.OLD_IMAGE, migration=b.migration_state(end="2024-10-03T10:05:00Z")
        ),
        vmims=[b.vmim("m1", phase="Succeeded"), b.vmim("m2", phase="Failed")],
        expect={"method": "live_migrate", "migrating": False},
    ),
    # --- method 2: live migrate -----------------------------------------------------------------
    row(
        "live-migrate-enabled-and-migratable-is-live-migrate",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        expect={"method": "live_migrate", "action": "wait"},
    ),
    row(
        "live-migrate-enabled-and-volume-migration-is-live-migrate-even-if-not-migratable",
        vmi=b.vmi(changes=["VolumesChange"], migrated_volumes=1, live_migratable=False),
        expect={"method": "live_migrate", "action": "wait"},
    ),
    row(
        "live-migrate-enabled-but-not-migratable-and-no-evict-is-none",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE, live_migratable=False),
        expect={"method": "none", "action": "restart"},
    ),
    # --- method 3: evict, by effective eviction strategy --------------------------------------
    row(
        "evict-with-live-migrate-strategy-and-migratable-becomes-an-evacuation",
        vmi=b.vmi(eviction_strategy="LiveMigrate"),
        kubevirts=[kv(methods=EVICT)],
        expect={"method": "evict", "action": "wait"},
    ),
    row(
        "evict-with-live-migrate-if-possible-and-migratable-becomes-an-evacuation",
        vmi=b.vmi(eviction_strategy="LiveMigrateIfPossible"),
        kubevirts=[kv(methods=EVICT)],
        expect={"method": "evict", "action": "wait"},
    ),
    row(
        "evict-with-kubevirt-wide-live-migrate-strategy-and-migratable-is-evict",
        vmi=b.vmi(),
        kubevirts=[kv(methods=EVICT, eviction_strategy="LiveMigrate")],
        expect={"method": "evict", "action": "wait"},
    ),
    row(
        "evict-with-live-migrate-strategy-and-not-migratable-is-refused-forever",
        vmi=b.vmi(eviction_strategy="LiveMigrate", live_migratable=False),
        kubevirts=[kv(methods=EVICT)],
        expect={"method": "none", "action": "restart"},
    ),
    row(
        "evict-with-external-strategy-is-none-even-when-migratable",
        vmi=b.vmi(eviction_strategy="External"),
        kubevirts=[kv(methods=EVICT)],
        expect={"method": "none", "action": "migrate"},
    ),
    row(
        "evict-with-none-strategy-and-run-strategy-always-restarts-updated",
        vmi=b.vmi(eviction_strategy="None", live_migratable=False),
        vm=b.vm(run_strategy="Always"),
        kubevirts=[kv(methods=EVICT)],
        expect={"method": "evict", "action": "wait"},
    ),
    row(
        "evict-with-none-strategy-and-running-true-counts-as-always",
        vmi=b.vmi(live_migratable=False),
        vm=b.vm(run_strategy=None, running=True),
        kubevirts=[kv(methods=EVICT)],
        expect={"method": "evict", "run_strategy": "Always"},
    ),
    row(
        "evict-with-none-strategy-and-rerun-on-failure-stays-down",
        vmi=b.vmi(eviction_strategy="None", live_migratable=False),
        vm=b.vm(run_strategy="RerunOnFailure"),
        kubevirts=[kv(methods=EVICT)],
        expect={"method": "evict_stops", "action": "restart"},
    ),
    row(
        "evict-with-live-migrate-if-possible-and-not-migratable-deletes-the-pod",
        vmi=b.vmi(eviction_strategy="LiveMigrateIfPossible", live_migratable=False),
        vm=b.vm(run_strategy="Always"),
        kubevirts=[kv(methods=EVICT)],
        expect={"method": "evict"},
    ),
    row(
        "evict-with-live-migrate-if-possible-not-migratable-and-manual-stays-down",
        vmi=b.vmi(eviction_strategy="LiveMigrateIfPossible", live_migratable=False),
        vm=b.vm(run_strategy="Manual"),
        kubevirts=[kv(methods=EVICT)],
        expect={"method": "evict_stops", "action": "restart"},
    ),
    row(
        "evict-of-a-standalone-vmi-without-strategy-stays-down",
        vmi=b.vmi(owner_vm=None, live_migratable=False),
        vm=None,
        kubevirts=[kv(methods=EVICT)],
        expect={"method": "evict_stops", "action": "manual"},
    ),
    row(
        "live-migrate-and-evict-fall-back-to-evict-for-a-vmi-that-cannot-migrate",
        vmi=b.vmi(live_migratable=False),
        kubevirts=[kv(methods=("LiveMigrate", "Evict"))],
        expect={"method": "evict", "action": "wait"},
    ),
    row(
        "live-migrate-comes-before-evict-for-a-migratable-vmi",
        vmi=b.vmi(),
        kubevirts=[kv(methods=("Evict", "LiveMigrate"))],
        expect={"method": "live_migrate"},
    ),
    # --- method 4: none -----------------------------------------------------------------------
    row(
        "no-update-methods-is-none",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        kubevirts=[kv(methods=())],
        expect={"method": "none", "action": "migrate"},
    ),
    row(
        "no-kubevirt-cr-means-no-methods",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        kubevirts=[],
        expect={"method": "none", "outdated": False},
    ),
    row(
        "two-kubevirt-crs-mean-no-methods-and-only-the-label-counts",
        vmi=b.vmi(outdated_label=True, launcher_image=b.OLD_IMAGE),
        kubevirts=[kv(), kv(name="kubevirt-2")],
        expect={"method": "none", "outdated": True},
    ),
    # --- action -------------------------------------------------------------------------------
    row(
        "migratable-vmi-nothing-will-move-should-be-migrated",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        kubevirts=[kv(methods=())],
        expect={"action": "migrate"},
    ),
    row(
        "vm-with-always-should-be-restarted",
        vmi=b.vmi(live_migratable=False),
        vm=b.vm(run_strategy="Always"),
        kubevirts=[kv(methods=())],
        expect={"action": "restart"},
    ),
    row(
        "vm-with-rerun-on-failure-should-be-restarted",
        vmi=b.vmi(live_migratable=False),
        vm=b.vm(run_strategy="RerunOnFailure"),
        kubevirts=[kv(methods=())],
        expect={"action": "restart"},
    ),
    row(
        "vm-with-manual-should-be-restarted",
        vmi=b.vmi(live_migratable=False),
        vm=b.vm(run_strategy="Manual"),
        kubevirts=[kv(methods=())],
        expect={"action": "restart"},
    ),
    row(
        "vm-with-halted-cannot-be-restarted-so-manual",
        vmi=b.vmi(live_migratable=False),
        vm=b.vm(run_strategy="Halted"),
        kubevirts=[kv(methods=())],
        expect={"action": "manual"},
    ),
    row(
        "vm-without-run-strategy-or-running-is-halted-so-manual",
        vmi=b.vmi(live_migratable=False),
        vm=b.vm(run_strategy=None),
        kubevirts=[kv(methods=())],
        expect={"action": "manual", "run_strategy": "Halted"},
    ),
    row(
        "vm-with-once-cannot-be-restarted-so-manual",
        vmi=b.vmi(live_migratable=False),
        vm=b.vm(run_strategy="Once"),
        kubevirts=[kv(methods=())],
        expect={"action": "manual"},
    ),
    row(
        "vm-with-wait-as-receiver-is-manual",
        vmi=b.vmi(live_migratable=False),
        vm=b.vm(run_strategy="WaitAsReceiver"),
        kubevirts=[kv(methods=())],
        expect={"action": "manual"},
    ),
    row(
        "standalone-vmi-that-cannot-migrate-is-manual",
        vmi=b.vmi(owner_vm=None, live_migratable=False),
        vm=None,
        kubevirts=[kv(methods=())],
        expect={"action": "manual"},
    ),
    row(
        "owner-vm-missing-from-the-cache-is-manual",
        vmi=b.vmi(live_migratable=False),
        vm=None,
        kubevirts=[kv(methods=())],
        expect={"action": "manual", "owner_kind": "VirtualMachine", "run_strategy": ""},
    ),
    row(
        "pending-volume-change-is-manual-not-restart",
        vmi=b.vmi(changes=["VolumesChange"], live_migratable=False),
        vm=b.vm(run_strategy="Always"),
        kubevirts=[kv(methods=())],
        expect={"outdated_reason": "volumes_change", "action": "manual"},
    ),
    # --- update-migration failures --------------------------------------------------------------
    row(
        "failed-updater-migrations-are-counted-and-others-are-not",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        vmims=[
            b.vmim("a", phase="Failed", workload_update=True),
            b.vmim("b", phase="Failed", workload_update=True, annotate=False),
            b.vmim("c", phase="Failed"),
            b.vmim("d", phase="Succeeded", workload_update=True),
        ],
        expect={"update_migration_failures": 2, "method": "live_migrate"},
    ),
    # --- outdated since -----------------------------------------------------------------------
    row(
        "launcher-image-outdated-since-the-later-kubevirt-available-transition",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        expect={"outdated_since": AVAILABLE_SINCE},
    ),
    row(
        "launcher-image-outdated-since-the-later-running-transition",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE, running_since="2024-12-01T00:00:00Z"),
        expect={"outdated_since": parse_rfc3339("2024-12-01T00:00:00Z")},
    ),
    row(
        "launcher-image-outdated-since-running-when-kubevirt-has-no-available-time",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE),
        kubevirts=[kv(available_since=None)],
        expect={"outdated_since": RUNNING_SINCE},
    ),
    row(
        "launcher-image-outdated-since-is-unknown-without-either-time",
        vmi=b.vmi(launcher_image=b.OLD_IMAGE, running_since=None),
        kubevirts=[kv(available_since=None)],
        expect={"outdated": True, "outdated_since": None},
    ),
    row(
        "pending-change-outdated-since-its-conditions-transition",
        vmi=b.vmi(changes=["MigrationRequired"], change_since="2024-11-11T11:11:11Z"),
        expect={"outdated_since": parse_rfc3339("2024-11-11T11:11:11Z")},
    ),
]


@pytest.mark.parametrize(("vmi", "vm", "vmims", "kubevirts", "expect"), RULES)
def test_rule(
    vmi: Raw,
    vm: Raw | None,
    vmims: Sequence[Raw],
    kubevirts: Sequence[Raw],
    expect: dict[str, object],
) -> None:
    view = view_of(vmi, vm, vmims, kubevirts)
    assert {field: getattr(view, field) for field in expect} == expect


def test_view_carries_the_vmis_identity() -> None:
    view = view_of(b.vmi("web", "prod", node="n-3"), b.vm("web", "prod"), (), [b.kubevirt()])
    assert (view.namespace, view.name, view.phase, view.node) == (
        "prod",
        "web",
        "Running",
        "n-3",
    )
    assert view.launcher_image == b.TARGET_IMAGE


# --- control plane -------------------------------------------------------------------------


def _kv(**kwargs: Any) -> KubeVirt:
    return project_kubevirt(b.kubevirt(**kwargs))


@pytest.mark.parametrize(
    ("kubevirts", "expect"),
    [
        pytest.param(
            [
                _kv(
                    update_methods=["LiveMigrate", "Evict"],
                    eviction_strategy="LiveMigrate",
                    hco=True,
                )
            ],
            {
                "crs": 1,
                "converged": True,
                "update_methods": frozenset({"LiveMigrate", "Evict"}),
                "eviction_strategy": "LiveMigrate",
                "target_launcher_image": b.TARGET_IMAGE,
                "hco_managed": True,
            },
            id="single-deployed-cr-with-observed-equal-target-is-converged",
        ),
        pytest.param(
            [_kv(target_deployment_id="deploy-next")],
            {"converged": False},
            id="observed-deployment-other-than-target-is-not-converged",
        ),
        pytest.param(
            [_kv(phase="Deploying")],
            {"converged": False},
            id="phase-other-than-deployed-is-not-converged",
        ),
        pytest.param(
            [_kv(observed_deployment_config=PLAIN_CONFIG)],
            {"target_launcher_image": "", "rebuilt_launcher_image": b.TARGET_IMAGE},
            id="plain-install-gives-only-the-rebuilt-target",
        ),
        pytest.param(
            [],
            {
                "crs": 0,
                "kubevirt": None,
                "converged": False,
                "update_methods": frozenset(),
                "target_launcher_image": "",
            },
            id="no-cr-has-no-methods-and-is-not-converged",
        ),
        pytest.param(
            [_kv(), _kv(name="kubevirt-2", hco=True)],
            {
                "crs": 2,
                "kubevirt": None,
                "converged": False,
                "update_methods": frozenset(),
                "hco_managed": False,
            },
            id="two-crs-have-no-methods-and-are-not-converged",
        ),
    ],
)
def test_control_plane_rule(kubevirts: list[KubeVirt], expect: dict[str, object]) -> None:
    cp = control_plane(kubevirts)
    assert {field: getattr(cp, field) for field in expect} == expect


def test_single_cr_is_the_control_planes_kubevirt() -> None:
    only = _kv()
    assert control_plane([only]).kubevirt is only


@pytest.mark.parametrize(
    ("run_strategy", "running", "effective"),
    [
        pytest.param("Manual", None, "Manual", id="run-strategy-set-wins"),
        pytest.param("Halted", True, "Halted", id="run-strategy-wins-over-running"),
        pytest.param(None, True, "Always", id="running-true-is-always"),
        pytest.param(None, False, "Halted", id="running-false-is-halted"),
        pytest.param(None, None, "Halted", id="neither-is-halted"),
    ],
)
def test_effective_run_strategy(
    run_strategy: str | None, running: bool | None, effective: str
) -> None:
    assert (
        effective_run_strategy(project_vm(b.vm(run_strategy=run_strategy, running=running)))
        == effective
    )

"""`advice`: why automation does (or does not) update a VMI, and what a human should do."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.advice import explain
from exporter.model import ControlPlane
from tests.cli.test_report import CP, control_plane, kubevirt, view


@pytest.mark.parametrize(
    ("cp", "changes", "expected"),
    [
        (CP, {"method": "in_progress"}, "migration of this VMI is in progress"),
        (CP, {}, "LiveMigrate is enabled and the VMI is live-migratable"),
        (
            CP,
            {"live_migratable": False, "not_migratable_reason": "X"},
            "a volume migration is in progress",
        ),
        (
            control_plane(kubevirt(methods=("Evict",))),
            {"method": "evict", "eviction_strategy": "LiveMigrate"},
            "turns the eviction into a migration",
        ),
        (
            control_plane(kubevirt(methods=("Evict",))),
            {"method": "evict", "live_migratable": False, "not_migratable_reason": "X"},
            "deletes the launcher pod and runStrategy Always starts a new VMI",
        ),
        (
            control_plane(kubevirt(methods=("Evict",))),
            {
                "method": "evict_stops",
                "action": "manual",
                "run_strategy": "Halted",
                "live_migratable": False,
                "not_migratable_reason": "SEVNotLiveMigratable",
            },
            "runStrategy Halted does not start a new VMI: the VM stays down",
        ),
        (
            control_plane(kubevirt(methods=())),
            {"method": "none", "action": "migrate"},
            "no workloadUpdateMethods configured",
        ),
        (
            control_plane(crs=0),
            {"method": "none", "action": "migrate"},
            "0 KubeVirt CRs: upstream acts only with exactly one",
        ),
        (
            CP,
            {"method": "none", "action": "restart", "live_migratable": False},
            "LiveMigrate skips it (not live-migratable: ConditionMissing); Evict is not enabled",
        ),
        (
            control_plane(kubevirt(methods=("Evict",))),
            {"method": "none", "action": "migrate", "eviction_strategy": "External"},
            "Evict is refused and retried forever (eviction strategy External)",
        ),
        (
            control_plane(kubevirt(methods=("LiveMigrate", "Evict"))),
            {
                "method": "none",
                "action": "restart",
                "eviction_strategy": "LiveMigrate",
                "live_migratable": False,
                "not_migratable_reason": "InterfaceNotLiveMigratable",
            },
            "LiveMigrate skips it (not live-migratable: InterfaceNotLiveMigratable); Evict is "
            "refused and retried forever (eviction strategy LiveMigrate needs a live-migratable",
        ),
    ],
)
def test_explain_names_why_automation_moves_or_skips_the_vmi(
    cp: ControlPlane, changes: dict[str, Any], expected: str
) -> None:
    assert expected in explain(view(**changes), cp)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"action": "migrate"}, "create a VirtualMachineInstanceMigration"),
        ({"action": "restart"}, "`virtctl restart vm-1 -n default`"),
        (
            {"action": "manual", "run_strategy": "Once"},
            "runStrategy Once: `virtctl restart` is refused",
        ),
        ({"action": "manual"}, "a volume change (VolumesChange) is pending"),
        (
            {"action": "manual", "owner_kind": "", "run_strategy": ""},
            "recreate it from its manifest",
        ),
    ],
)
def test_explain_says_what_a_human_should_do(changes: dict[str, Any], expected: str) -> None:
    assert expected in explain(view(method="none", **changes), CP)

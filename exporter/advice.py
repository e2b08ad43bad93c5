"""Why automation does (or does not) update a VMI and what a human should do, in words.

These are the words of `report` and `plan`.

Contract:
- Pure: views and the control plane in, sentences out; no IO, no clock.
- `explain(view, cp)` says in one sentence why automation does (or does not) move a VMI, and what
  its action asks of a human; `manual_reason(view)` why neither a migration nor `virtctl restart`
  updates it; `advise(rows, cp, ...)` the next steps over a set of rows, most important first.
  The upstream behaviour behind each branch is stated in docs/semantics.md.
- Advice never suggests `virtctl stop` (it sets runStrategy Halted, kubevirt/kubevirt:
  pkg/virt-api/rest/lifecycle.go), and on HCO-managed clusters points at the HyperConverged CR,
  whose operator reverts edits of the KubeVirt CR (`hco_or_kubevirt_cr`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from exporter.derive import RESTARTABLE_RUN_STRATEGIES
from exporter.model import (
    ACTIONS,
    CONDITION_MISSING,
    Action,
    ControlPlane,
    KubeVirt,
    Method,
    Resource,
    VmiView,
)

#: Actions that need a human (`report` and `plan` exit with 1).
HUMAN_ACTIONS: Final[frozenset[Action]] = frozenset({"migrate", "restart", "manual"})
#: Methods under which nothing will ever move the VMI.
STUCK_METHODS: Final[frozenset[Method]] = frozenset({"none", "evict_stops"})

#: Exit codes of `report` and `plan` (docs/cli.md): nothing needs a human / something does.
EXIT_OK: Final = 0
EXIT_NEEDS_ACTION: Final = 1


@dataclass(frozen=True)
class Source:
    """Where the objects came from and what it lacked: no claim may rest on a missing kind."""

    #: The snapshot read, None for a cluster.
    snapshot: str | None = None
    #: Kinds the source did not capture.
    missing: frozenset[Resource] = frozenset()
    #: Objects of kinds that are not read, by kind.
    skipped: Mapping[str, int] = field(default_factory=dict)

    @property
    def policy_known(self) -> bool:
        """The KubeVirt CRs were read, so the update policy (or its absence) is known."""
        return "kubevirts" not in self.missing


#: A cluster read: every kind listed.
CLUSTER: Final = Source()

#: Where a row's why is shown: the advice names it, never a column the table may not show.
WHY_SHOWN_BY: Final = "`report -o wide`, or `why` in `-o json`"

#: Why the advice for a Halted or Once VM is runStrategy Manual (docs and runbooks say the same).
MANUAL_RATHER_THAN_ALWAYS: Final = (
    "Manual accepts `virtctl restart` and, like Halted and Once, never starts the VM by "
    "itself; Always would also restart it whenever its guest shuts down"
)


def count_by_action(rows: Sequence[VmiView]) -> dict[str, int]:
    """How many rows have each action; every action is a key, zero included."""
    return {a: sum(1 for v in rows if v.action == a) for a in ACTIONS}


def explain(view: VmiView, cp: ControlPlane, *, source: Source = CLUSTER) -> str:
    """Why automation does what `view.method` says, and what `view.action` asks of a human."""
    why = _why_method(view, cp, source)
    if view.action == "wait":
        return why
    return f"{why}; {_why_action(view)}"


def _migratable_text(view: VmiView) -> str:
    if view.live_migratable:
        return "live-migratable"
    return f"not live-migratable: {view.not_migratable_reason or CONDITION_MISSING}"


def run_strategy_unknown(view: VmiView) -> bool:
    """The VMI belongs to a VirtualMachine that was not read (not captured, or already gone)."""
    return view.owner_kind == "VirtualMachine" and not view.run_strategy


def _run_strategy_text(view: VmiView) -> str:
    if view.owner_kind != "VirtualMachine":
        return "a standalone VMI is not recreated: it is gone"
    if run_strategy_unknown(view):
        return (
            "whether a new VMI starts depends on the VM's runStrategy, which is unknown (its "
            "VirtualMachine was not read)"
        )
    return f"runStrategy {view.run_strategy} does not start a new VMI: the VM stays down"


def _why_method(view: VmiView, cp: ControlPlane, source: Source) -> str:
    methods = cp.update_methods
    strategy = view.eviction_strategy
    if view.method == "in_progress":
        return "a migration of this VMI is in progress"
    if view.method == "live_migrate":
        if view.live_migratable:
            return "LiveMigrate is enabled and the VMI is live-migratable"
        return "LiveMigrate is enabled and a volume migration is in progress"
    if view.method == "evict":
        if strategy in ("LiveMigrate", "LiveMigrateIfPossible") and view.live_migratable:
            return (
                f"Evict is enabled; eviction strategy {strategy} turns the eviction into a "
                "migration"
            )
        return (
            f"Evict is enabled; eviction strategy {strategy} deletes the launcher pod and "
            f"runStrategy {view.run_strategy} starts a new VMI"
        )
    if not source.policy_known:
        return (
            "the KubeVirt CR was not read, so what automation does is unknown (shown as if no "
            "update method were enabled)"
        )
    if cp.crs != 1:
        return f"{cp.crs} KubeVirt CRs: upstream acts only with exactly one, nothing is updated"
    if not methods:
        return "no workloadUpdateMethods configured: nothing updates workloads automatically"
    if view.method == "evict_stops":
        return (
            f"Evict deletes the launcher pod (eviction strategy {strategy}, "
            f"{_migratable_text(view)}) and {_run_strategy_text(view)}"
        )
    return _why_none(view, methods)


def _why_none(view: VmiView, methods: frozenset[str]) -> str:
    parts = []
    if "LiveMigrate" in methods:
        parts.append(f"LiveMigrate skips it ({_migratable_text(view)})")
    else:
        parts.append("LiveMigrate is not enabled")
    if "Evict" not in methods:
        parts.append("Evict is not enabled")
    elif view.eviction_strategy == "External":
        parts.append("Evict is refused and retried forever (eviction strategy External)")
    else:
        parts.append(
            f"Evict is refused and retried forever (eviction strategy {view.eviction_strategy} "
            "needs a live-migratable VMI)"
        )
    return "; ".join(parts)


def _why_action(view: VmiView) -> str:
    if view.action == "migrate":
        return "create a VirtualMachineInstanceMigration (`plan`)"
    if view.action == "restart":
        return f"`virtctl restart {view.name} -n {view.namespace}` (`plan`)"
    return f"manual: {manual_reason(view)}"


def manual_reason(view: VmiView) -> str:
    """Why neither a migration nor `virtctl restart` updates this VMI, and what to do instead."""
    if view.owner_kind != "VirtualMachine":
        return (
            f"standalone VMI ({_migratable_text(view)}); recreate it from its manifest "
            "(delete, then create) in a maintenance window"
        )
    if run_strategy_unknown(view):
        return (
            f"its VirtualMachine was not read, so its runStrategy is unknown: `virtctl restart "
            f"{view.name} -n {view.namespace}` updates it unless the runStrategy is Halted or "
            "Once (read it with `kubectl get vm "
            f"{view.name} -n {view.namespace} -o jsonpath='{{.spec.runStrategy}}'`)"
        )
    if view.run_strategy in RESTARTABLE_RUN_STRATEGIES:
        return (
            "a volume change (VolumesChange) is pending and not live-migratable: "
            "finish or revert the VM's volume update, then restart the VM"
        )
    if view.run_strategy == "WaitAsReceiver":
        return "runStrategy WaitAsReceiver: the VM awaits an incoming migration; update it after"
    return (
        f"runStrategy {view.run_strategy}: `virtctl restart` is refused; set the VM's "
        f"runStrategy to Manual, then `virtctl restart {view.name} -n {view.namespace}` in a "
        f"maintenance window ({MANUAL_RATHER_THAN_ALWAYS})"
    )


def hco_or_kubevirt_cr(cp: ControlPlane) -> str:
    """Where workloadUpdateStrategy must be edited on this cluster."""
    if cp.hco_managed:
        return (
            "the HyperConverged CR (spec.workloadUpdateStrategy; spec.virtualization."
            "workloadUpdateStrategy in hco.kubevirt.io/v1) — HCO reverts edits of the KubeVirt CR"
        )
    kv = cp.kubevirt
    name = f" {kv.namespace}/{kv.name}" if kv else ""
    return f"the KubeVirt CR{name} (spec.workloadUpdateStrategy)"


def vmis(count: int, adjective: str = "") -> str:
    """`1 outdated VMI`, `3 outdated VMIs`."""
    words = f"{adjective} VMI" if adjective else "VMI"
    return f"{count} {words}" if count == 1 else f"{count} {words}s"


def advise(
    rows: Sequence[VmiView],
    cp: ControlPlane,
    *,
    kubevirts: Sequence[KubeVirt] = (),
    preflight: bool = False,
    source: Source = CLUSTER,
) -> list[str]:
    """The next steps, most important first; each a full sentence. Nothing claimed here rests
    on a kind the source did not capture."""
    advice = _control_plane_advice(cp, kubevirts, source)
    counts = count_by_action(rows)
    stuck = sum(1 for v in rows if v.method in STUCK_METHODS)
    adjective = "Running" if preflight else "outdated"
    if stuck and cp.crs == 1:
        if not cp.update_methods:
            advice.append(
                "No workloadUpdateMethods are configured, so nothing moves "
                f"{vmis(stuck, adjective)}: edit {hco_or_kubevirt_cr(cp)}, e.g. "
                "workloadUpdateMethods: [LiveMigrate, Evict]."
            )
        elif "LiveMigrate" not in cp.update_methods and counts["migrate"]:
            advice.append(
                f"LiveMigrate is not enabled although {vmis(counts['migrate'], adjective)} could "
                f"be live-migrated: add it to workloadUpdateMethods in {hco_or_kubevirt_cr(cp)}."
            )
    steps = _preflight_steps(counts) if preflight else _steps(counts, len(rows))
    if not source.policy_known:
        steps = [
            f"Unless automation updates them (unknown without the KubeVirt CR): "
            f"{step[:1].lower()}{step[1:]}"
            for step in steps
        ]
    advice.extend(steps)
    failing = [v for v in rows if v.update_migration_failures]
    if failing:
        names = ", ".join(f"{v.namespace}/{v.name}" for v in failing[:5])
        more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
        advice.append(
            f"Workload-update migrations keep failing for {vmis(len(failing))} ({names}{more}); "
            "automation retries them forever: read the failed migrations' status "
            "(`kubectl get vmim -n NAMESPACE`) and the target pods' events."
        )
    return advice


def _steps(counts: Mapping[str, int], rows: int) -> list[str]:
    steps = []
    if counts["migrate"]:
        steps.append(
            f"Live-migrate {vmis(counts['migrate'], 'outdated')} now: "
            "`kubevirt-update-exporter plan | kubectl create -f -`."
        )
    if counts["restart"]:
        steps.append(
            f"Restart {vmis(counts['restart'], 'outdated')} that cannot migrate (`virtctl "
            "restart`, listed by `plan`); a restart also applies the VM's pending spec changes. "
            "Do not stop the VM instead: stopping sets runStrategy Halted and it stays down."
        )
    if counts["manual"]:
        steps.append(
            f"Handle {vmis(counts['manual'], 'outdated')} by hand; each one's why says how "
            f"({WHY_SHOWN_BY})."
        )
    if rows and counts["wait"] == rows:
        steps.append("Automation is updating every outdated VMI listed; nothing to do but wait.")
    return steps


def _preflight_steps(counts: Mapping[str, int]) -> list[str]:
    steps = []
    if counts["migrate"]:
        steps.append(
            f"After an upgrade, {vmis(counts['migrate'])} would need a migration by hand "
            "(`plan` lists them once they are outdated)."
        )
    if counts["restart"]:
        steps.append(
            f"After an upgrade, {vmis(counts['restart'])} would need a restart: fix what keeps "
            f"them from migrating (each one's why: {WHY_SHOWN_BY}) or plan a maintenance window."
        )
    if counts["manual"]:
        steps.append(
            f"After an upgrade, {vmis(counts['manual'])} would need manual handling (each one's "
            f"why: {WHY_SHOWN_BY})."
        )
    if counts["wait"] and not (counts["migrate"] or counts["restart"] or counts["manual"]):
        steps.append("Automation would update every Running VMI listed after an upgrade.")
    return steps


def _control_plane_advice(
    cp: ControlPlane, kubevirts: Sequence[KubeVirt], source: Source
) -> list[str]:
    if not source.policy_known:
        return [
            "The snapshot holds no KubeVirt CR, so whether automation updates these VMIs is "
            "unknown; METHOD and ACTION are shown as if no update method were enabled. Add "
            "`kubectl get kubevirt -A -o yaml` to the snapshot."
        ]
    if cp.crs == 0:
        return ["No KubeVirt CR found: upstream will not update any workload."]
    if cp.crs > 1:
        names = ", ".join(f"{k.namespace}/{k.name}" for k in kubevirts)
        listed = f" ({names})" if names else ""
        return [
            f"{cp.crs} KubeVirt CRs found{listed}: upstream acts only when there is exactly one "
            "and will not update anything."
        ]
    if not cp.converged:
        kv = cp.kubevirt
        phase = kv.phase if kv else ""
        return [
            f"The control plane is not converged (phase {phase or 'unknown'}): the workload "
            "updater waits for the update to finish; outdated VMIs are expected meanwhile."
        ]
    return []

"""The update semantics (docs/semantics.md): records in, `ControlPlane` and `VmiView` out.

Contract:
- Pure and deterministic: the same records give the same view; no clock, no IO.
- `control_plane(kubevirts)` is the policy in force. Upstream acts on exactly one KubeVirt CR; with
  0 or more than 1 the methods are empty, nothing is converged and the targets are unknown.
- `derive(vmi, vm=, migrations=, cp=)` mirrors virt-controller's workload updater and the eviction
  webhook for one VMI. Its `method` and `action` are computed for every VMI as if it were outdated
  (`report --preflight`); `method in {in_progress, live_migrate, evict}` exactly when
  `action == "wait"`. No advice anywhere is `virtctl stop` (it sets runStrategy Halted,
  kubevirt/kubevirt: pkg/virt-api/rest/lifecycle.go `StopVMRequestHandler`).
- "Outdated since" is approximate: for the launcher image it is the later of the VMI's Running
  transition and the KubeVirt CR's Available transition (an update makes the CR transition), for a
  pending change the condition's own lastTransitionTime; None when neither is known.
- The rebuilt launcher image never decides anything. It is compared with the label only when the
  exact target is unknown, the control plane is converged and the VMI is Running, not deleting, with
  a known image; a difference is a `verdict_disagreement`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from exporter.model import (
    Action,
    ControlPlane,
    KubeVirt,
    Method,
    OutdatedReason,
    UpdateMethod,
    Vm,
    Vmi,
    Vmim,
    VmiView,
)

#: kubevirt/kubevirt: staging/src/kubevirt.io/api/core/v1/types.go (`KubeVirtPhaseDeployed`).
PHASE_DEPLOYED: Final = "Deployed"
PHASE_RUNNING: Final = "Running"
PHASE_FAILED: Final = "Failed"
OWNER_KIND_VM: Final = "VirtualMachine"
#: The effective eviction strategy when neither the VMI nor the KubeVirt CR sets one.
NO_EVICTION_STRATEGY: Final = "None"

#: Methods under which automation is acting, so a human waits (docs/semantics.md, "Action").
WAITING_METHODS: Final[frozenset[Method]] = frozenset({"in_progress", "live_migrate", "evict"})
#: Run strategies `virtctl restart` accepts: the restart subresource refuses Halted and Once
#: (kubevirt/kubevirt: pkg/virt-api/rest/lifecycle.go `RestartVMRequestHandler`); WaitAsReceiver
#: is a migration target that must not be restarted by hand.
RESTARTABLE_RUN_STRATEGIES: Final = frozenset({"Always", "RerunOnFailure", "Manual"})


def control_plane(kubevirts: Iterable[KubeVirt]) -> ControlPlane:
    """The update policy in force; only a single KubeVirt CR is acted on upstream."""
    crs = list(kubevirts)
    if len(crs) != 1:
        return ControlPlane(
            crs=len(crs),
            kubevirt=None,
            converged=False,
            update_methods=frozenset(),
            eviction_strategy=None,
            target_launcher_image="",
            rebuilt_launcher_image="",
            hco_managed=False,
        )
    (kv,) = crs
    return ControlPlane(
        crs=1,
        kubevirt=kv,
        converged=is_converged(kv),
        update_methods=frozenset(kv.update_methods),
        eviction_strategy=kv.eviction_strategy,
        target_launcher_image=kv.target_launcher_image,
        rebuilt_launcher_image=kv.rebuilt_launcher_image,
        hco_managed=kv.hco_managed,
    )


def is_converged(kv: KubeVirt) -> bool:
    """The updater only acts when the install is Deployed and observed == target deployment
    (kubevirt/kubevirt: pkg/virt-controller/watch/workload-updater/workload-updater.go
    `execute`)."""
    return kv.phase == PHASE_DEPLOYED and kv.observed_deployment_id == kv.target_deployment_id


def effective_run_strategy(vm: Vm) -> str:
    """spec.runStrategy, else spec.running true -> Always, false or unset -> Halted.

    Mirrors `VirtualMachine.RunStrategy()` (kubevirt/kubevirt: staging/src/kubevirt.io/api/core/v1/
    types.go), except that a VM setting both fields (which upstream rejects) takes its runStrategy.
    """
    if vm.run_strategy:
        return vm.run_strategy
    return "Always" if vm.running else "Halted"


def effective_eviction_strategy(vmi: Vmi, cp: ControlPlane) -> str:
    """VMI spec, else KubeVirt configuration, else "None" (kubevirt/kubevirt: pkg/util/migrations/
    migrations.go `VMIEvictionStrategy`; upstream's nil strategy behaves as None on eviction)."""
    return vmi.eviction_strategy or cp.eviction_strategy or NO_EVICTION_STRATEGY


def derive(vmi: Vmi, *, vm: Vm | None, migrations: Sequence[Vmim], cp: ControlPlane) -> VmiView:
    """Everything the exporter says about one VMI (docs/semantics.md).

    `vm` is the owner VM (None when standalone or not in the cache); `migrations` are the VMIMs
    whose spec.vmiName is this VMI, in its namespace.
    """
    owner = vm if vmi.owner_vm is not None else None
    run_strategy = effective_run_strategy(owner) if owner is not None else ""
    migrating = vmi.migrating or any(not migration.finished for migration in migrations)
    image_outdated = is_image_outdated(vmi, cp)
    reason = outdated_reason(vmi, image_outdated)
    method = update_method(vmi, run_strategy=run_strategy, migrating=migrating, cp=cp)
    return VmiView(
        namespace=vmi.namespace,
        name=vmi.name,
        phase=vmi.phase,
        node=vmi.node,
        owner_kind=OWNER_KIND_VM if vmi.owner_vm is not None else "",
        run_strategy=run_strategy,
        eviction_strategy=effective_eviction_strategy(vmi, cp),
        launcher_image=vmi.launcher_image,
        outdated=reason is not None,
        outdated_reason=reason,
        live_migratable=vmi.live_migratable,
        not_migratable_reason=None if vmi.live_migratable else vmi.not_migratable_reason,
        method=method,
        action=update_action(
            vmi, method=method, owned=owner is not None, run_strategy=run_strategy
        ),
        outdated_since=outdated_since(vmi, reason, cp),
        update_migration_failures=update_migration_failures(migrations),
        verdict_disagreement=has_verdict_disagreement(vmi, cp),
        migrating=migrating,
    )


def is_candidate(vmi: Vmi) -> bool:
    """Only Running VMIs that are not being deleted are considered (kubevirt/kubevirt:
    pkg/virt-controller/watch/workload-updater/workload-updater.go `getUpdateData`)."""
    return vmi.phase == PHASE_RUNNING and not vmi.deleting


def is_image_outdated(vmi: Vmi, cp: ControlPlane) -> bool:
    """The launcher image is not the target: virt-controller's label, or a known exact target
    that differs. An empty image is never outdated: upstream's `isOutdated` (workload-updater.go)
    and `setLauncherContainerInfo` (pkg/virt-controller/watch/vmi/lifecycle.go) both skip it."""
    if not vmi.launcher_image:
        return False
    if vmi.outdated_label:
        return True
    target = cp.target_launcher_image
    return bool(target) and vmi.launcher_image != target


def is_change_outdated(vmi: Vmi) -> bool:
    """A pending hotplug/migration/volume change, not while the VMI migrates (kubevirt/kubevirt:
    workload-updater.go `doesRequireMigration`, which returns false for a migrating VMI)."""
    return bool(vmi.pending_changes) and not vmi.migrating


def outdated_reason(vmi: Vmi, image_outdated: bool) -> OutdatedReason | None:
    """The first reason that applies to a candidate VMI, in OUTDATED_REASONS order, else None."""
    if not is_candidate(vmi):
        return None
    if image_outdated:
        return "launcher_image"
    if is_change_outdated(vmi):
        return vmi.pending_changes[0].reason
    return None


def outdated_since(vmi: Vmi, reason: OutdatedReason | None, cp: ControlPlane) -> float | None:
    """Approximate start of the outdated state (see the module contract)."""
    if reason is None:
        return None
    if reason == "launcher_image":
        available = cp.kubevirt.available_since if cp.kubevirt is not None else None
        known = [since for since in (vmi.running_since, available) if since is not None]
        return max(known) if known else None
    return next(change.since for change in vmi.pending_changes if change.reason == reason)


def update_method(vmi: Vmi, *, run_strategy: str, migrating: bool, cp: ControlPlane) -> Method:
    """What automation will do for this VMI if it is (or becomes) outdated, first rule that applies.

    1. in_progress: a migration is under way; the updater skips such VMIs (`getUpdateData`).
    2. live_migrate: LiveMigrate is enabled and the VMI is live-migratable or moving its volumes
       (`getUpdateData`: `automatedMigrationAllowed && (IsMigratable() || volMig)`).
    3. Evict enabled: what the eviction webhook does with the launcher pod (`eviction_outcome`).
    4. none.
    (kubevirt/kubevirt: pkg/virt-controller/watch/workload-updater/workload-updater.go)
    """
    if migrating:
        return "in_progress"
    methods: frozenset[UpdateMethod] = cp.update_methods
    if "LiveMigrate" in methods and (vmi.live_migratable or vmi.volume_migration):
        return "live_migrate"
    if "Evict" in methods:
        return eviction_outcome(vmi, run_strategy=run_strategy, cp=cp)
    return "none"


def eviction_outcome(vmi: Vmi, *, run_strategy: str, cp: ControlPlane) -> Method:
    """The updater's eviction of the launcher pod, as the eviction webhook treats it
    (kubevirt/kubevirt: pkg/virt-api/webhooks/validating-webhook/admitters/
    pod-eviction-admitter.go `admitLauncherPod`):

    - LiveMigrate / LiveMigrateIfPossible and migratable: the VMI is marked for evacuation and
      migrated -> evict.
    - LiveMigrate and not migratable: denied, retried forever (FailedEvict) -> none.
    - External: marked for an external controller; the updater's eviction never succeeds -> none.
    - None, LiveMigrateIfPossible and not migratable, or any other value (the webhook's switch lets
      it through): the pod is deleted and the VMI ends Succeeded. Only run strategy Always starts a
      new VMI in an updated pod (pkg/virt-controller/watch/vm/vm.go `syncRunStrategy`:
      RerunOnFailure does not restart a Succeeded VMI); otherwise it stays down -> evict_stops.
      A VMI whose VM is not in the cache counts as standalone here.
    """
    strategy = effective_eviction_strategy(vmi, cp)
    if strategy in ("LiveMigrate", "LiveMigrateIfPossible") and vmi.live_migratable:
        return "evict"
    if strategy in ("LiveMigrate", "External"):
        return "none"
    return "evict" if run_strategy == "Always" else "evict_stops"


def update_action(vmi: Vmi, *, method: Method, owned: bool, run_strategy: str) -> Action:
    """What a human should do: wait while automation acts; else migrate (create a VMIM) if
    live-migratable; else `virtctl restart` when the restart subresource accepts the VM's run
    strategy (pkg/virt-api/rest/lifecycle.go `RestartVMRequestHandler`) and no volume change is
    pending (a restart would not apply it, the update needs a migration); else manual."""
    if method in WAITING_METHODS:
        return "wait"
    if vmi.live_migratable:
        return "migrate"
    volumes_pending = any(change.reason == "volumes_change" for change in vmi.pending_changes)
    if owned and run_strategy in RESTARTABLE_RUN_STRATEGIES and not volumes_pending:
        return "restart"
    return "manual"


def update_migration_failures(migrations: Sequence[Vmim]) -> int:
    """Failed migrations the workload updater created for this VMI."""
    return sum(
        1
        for migration in migrations
        if migration.workload_update and migration.phase == PHASE_FAILED
    )


def has_verdict_disagreement(vmi: Vmi, cp: ControlPlane) -> bool:
    """virt-controller's label and the rebuilt-image cross-check disagree (see module contract).

    Only meaningful while converged: during an update virt-controller and the observed deployment
    config legitimately point at different images.
    """
    rebuilt = cp.rebuilt_launcher_image
    if cp.target_launcher_image or not rebuilt or not cp.converged:
        return False
    if not is_candidate(vmi) or not vmi.launcher_image:
        return False
    return vmi.outdated_label != (vmi.launcher_image != rebuilt)

"""The exporter's vocabulary: compact records of the four watched kinds and the per-VMI view.

Contract:
- A record keeps only the fields the derivation reads (a few hundred bytes, where the parsed
  object is 10-100 KiB of Python objects). Records are immutable and compare by value, so a
  modification that touches nothing we derive from is recognised as "no change".
- `objects.py` builds records from raw objects (and is the only place that reads raw shapes);
  `derive.py` turns records into `ControlPlane` and `VmiView`; rendering, the report and the plan
  read views only.
- Timestamps are Unix seconds (float); absent ones are None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

#: The four watched kinds, as the `resource` label value of self-metrics uses them.
Resource = Literal[
    "virtualmachineinstances", "virtualmachines", "virtualmachineinstancemigrations", "kubevirts"
]
RESOURCES: Final[tuple[Resource, ...]] = (
    "virtualmachineinstances",
    "virtualmachines",
    "virtualmachineinstancemigrations",
    "kubevirts",
)

#: Watch event types that carry an object to store or drop (kubernetes/kubernetes:
#: staging/src/k8s.io/apimachinery/pkg/watch/watch.go; BOOKMARK and ERROR carry none).
OBJECT_EVENTS: Final = frozenset({"ADDED", "MODIFIED", "DELETED"})

#: The kind of each resource, as objects and messages spell it.
KINDS: Final[dict[Resource, str]] = {
    "virtualmachineinstances": "VirtualMachineInstance",
    "virtualmachines": "VirtualMachine",
    "virtualmachineinstancemigrations": "VirtualMachineInstanceMigration",
    "kubevirts": "KubeVirt",
}


class InputError(Exception):
    """An error in what the user gave (a file, a flag) whose message names the thing and the
    problem: logged as one line, without a traceback."""


#: (namespace, name) of a namespaced object.
Key = tuple[str, str]

#: Why a VMI is outdated, in the order docs/semantics.md gives (first that applies wins).
OutdatedReason = Literal[
    "launcher_image", "hotplug_cpu", "hotplug_memory", "migration_required", "volumes_change"
]
OUTDATED_REASONS: Final[tuple[OutdatedReason, ...]] = (
    "launcher_image",
    "hotplug_cpu",
    "hotplug_memory",
    "migration_required",
    "volumes_change",
)

#: What automation will do for an outdated VMI.
Method = Literal["in_progress", "live_migrate", "evict", "evict_stops", "none"]
METHODS: Final[tuple[Method, ...]] = ("in_progress", "live_migrate", "evict", "evict_stops", "none")

#: What a human should do for an outdated VMI.
Action = Literal["wait", "migrate", "restart", "manual"]
ACTIONS: Final[tuple[Action, ...]] = ("wait", "migrate", "restart", "manual")

#: Update methods of `KubeVirt.spec.workloadUpdateStrategy.workloadUpdateMethods`.
UpdateMethod = Literal["LiveMigrate", "Evict"]
UPDATE_METHODS: Final[tuple[UpdateMethod, ...]] = ("LiveMigrate", "Evict")

#: `reason` of a missing LiveMigratable condition.
CONDITION_MISSING: Final = "ConditionMissing"


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A VMI condition that makes it outdated: a pending change (docs/semantics.md, "Outdated")."""

    reason: OutdatedReason
    #: The condition's lastTransitionTime, the start of "outdated since" for this reason.
    since: float | None


@dataclass(frozen=True, slots=True)
class Vmi:
    """What the derivation reads of a VirtualMachineInstance."""

    namespace: str
    name: str
    phase: str
    #: metadata.deletionTimestamp is set.
    deleting: bool
    #: status.nodeName, "" when unscheduled.
    node: str
    #: The label `kubevirt.io/outdatedLauncherImage` is present (virt-controller's own verdict).
    outdated_label: bool
    #: status.launcherContainerImageVersion, "" when unknown.
    launcher_image: str
    #: Condition LiveMigratable is True.
    live_migratable: bool
    #: The LiveMigratable condition's reason when it is not True, CONDITION_MISSING when absent,
    #: else "".
    not_migratable_reason: str
    #: Pending hotplug/migration/volume conditions, in OUTDATED_REASONS order.
    pending_changes: tuple[PendingChange, ...]
    #: status.migrationState.startTimestamp is set and endTimestamp is not.
    migrating: bool
    #: A volume migration is in progress that the updater may complete by live migration:
    #: status.migratedVolumes is non-empty and valid (see objects `_volume_migration`).
    volume_migration: bool
    #: spec.evictionStrategy, None when unset.
    eviction_strategy: str | None
    #: Name of the controlling VirtualMachine (ownerReferences), None for a standalone VMI.
    owner_vm: str | None
    #: status.phaseTransitionTimestamps entry for Running.
    running_since: float | None


@dataclass(frozen=True, slots=True)
class Vm:
    """What the derivation reads of a VirtualMachine."""

    namespace: str
    name: str
    #: spec.runStrategy, None when unset.
    run_strategy: str | None
    #: spec.running, None when unset (deprecated field, still honoured upstream).
    running: bool | None


@dataclass(frozen=True, slots=True)
class Vmim:
    """What the derivation reads of a VirtualMachineInstanceMigration."""

    namespace: str
    name: str
    #: spec.vmiName.
    vmi_name: str
    #: status.phase, "" when not yet set.
    phase: str
    #: Created by the workload updater (annotation `kubevirt.io/workloadUpdateMigration`
    #: or name prefix `kubevirt-workload-update-`).
    workload_update: bool

    @property
    def finished(self) -> bool:
        """The migration reached a final phase (Succeeded or Failed)."""
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class KubeVirt:
    """What the derivation reads of a KubeVirt CR."""

    namespace: str
    name: str
    #: status.phase (Deployed when converged).
    phase: str
    observed_deployment_id: str
    target_deployment_id: str
    observed_version: str
    target_version: str
    #: spec.workloadUpdateStrategy.workloadUpdateMethods, known values only, in spec order.
    update_methods: tuple[UpdateMethod, ...]
    #: spec.workloadUpdateStrategy.batchEvictionSize (upstream default 10 when unset).
    batch_eviction_size: int
    #: spec.workloadUpdateStrategy.batchEvictionInterval in seconds (upstream default 60 s).
    batch_eviction_interval_seconds: float
    #: spec.configuration.evictionStrategy, None when unset.
    eviction_strategy: str | None
    #: spec.configuration.migrations.parallelMigrationsPerCluster, None when unset.
    parallel_migrations_per_cluster: int | None
    #: status.outdatedVirtualMachineInstanceWorkloads, None when unset.
    reported_outdated: int | None
    #: `virtLauncherImage` of status.observedDeploymentConfig, "" when absent (exact target).
    target_launcher_image: str
    #: `{registry}/{imagePrefix}virt-launcher:{kubeVirtVersion}` rebuilt from the same JSON, "" when
    #: not computable (cross-check only).
    rebuilt_launcher_image: str
    #: lastTransitionTime of the Available condition.
    available_since: float | None
    #: Managed by the HyperConverged operator (detected from its labels).
    hco_managed: bool


@dataclass(frozen=True, slots=True)
class ControlPlane:
    """The update policy in force, derived from every KubeVirt CR seen (upstream acts on one)."""

    #: Number of KubeVirt CRs seen.
    crs: int
    #: The single CR when there is exactly one, else None.
    kubevirt: KubeVirt | None
    #: status.phase == Deployed and observed == target deployment ID (False without a single CR).
    converged: bool
    #: Enabled workload update methods (empty without a single CR).
    update_methods: frozenset[UpdateMethod]
    #: KubeVirt-wide eviction strategy (None without a single CR or when unset).
    eviction_strategy: str | None
    #: The exact target launcher image, "" when unknown.
    target_launcher_image: str
    #: The rebuilt target launcher image (cross-check), "" when unknown.
    rebuilt_launcher_image: str
    #: The single CR is HCO-managed.
    hco_managed: bool


@dataclass(frozen=True, slots=True)
class VmiView:
    """Everything the exporter says about one VMI: a function of its records and the control plane.

    `method` and `action` are computed for every VMI as if it were outdated (what automation would
    do if the control plane were upgraded now: `report --preflight`); they are exported as
    `update_state` only while `outdated` is True.
    """

    namespace: str
    name: str
    phase: str
    node: str
    #: "VirtualMachine" or "" (standalone).
    owner_kind: str
    #: Effective run strategy of the owner VM, "" for a standalone VMI.
    run_strategy: str
    #: Effective eviction strategy ("None" when nothing sets it).
    eviction_strategy: str
    launcher_image: str
    outdated: bool
    #: The first reason that applies while outdated, else None.
    outdated_reason: OutdatedReason | None
    live_migratable: bool
    #: The reason when not live-migratable, else None.
    not_migratable_reason: str | None
    method: Method
    action: Action
    #: Approximate start of the outdated state while outdated (see docs), else None.
    outdated_since: float | None
    #: Failed workload-update migrations of this VMI.
    update_migration_failures: int
    #: The outdated label and the rebuilt-image cross-check disagree on this VMI.
    verdict_disagreement: bool
    #: Any unfinished migration (VMIM or migrationState) exists for this VMI.
    migrating: bool

"""Raw KubeVirt objects -> records of `exporter.model`; what is in scope; which shard owns a VMI.

Contract:
- `project(resource, raw)` (and `project_vmi/vm/vmim/kubevirt`) is the only reader of raw object
  shapes. It returns a small immutable record or raises `MalformedObject`, whose text names the
  resource, the object (`namespace/name`, or `<unnamed>`) and the field path; it raises nothing
  else, whatever JSON-like value it is given.
- Only `metadata.name` is required. Every other field may be absent or null and then takes the
  default the record documents; present with the wrong type it is malformed (the typed reads are
  `exporter.rawobject`'s). Timestamps are RFC 3339 strings (a bad one is malformed) and become Unix
  seconds; `batchEvictionInterval` is a Go duration string (`1m0s`) and becomes seconds
  (`exporter.timeparse`).
- `KubeVirt.status.observedDeploymentConfig` is an opaque JSON string to the API server; when it is
  not a JSON object (or its image fields are not strings) the launcher images it would give are
  unknown (""), and the CR is NOT malformed: its policy (methods, convergence) is still good.
- Records share their repeated strings (namespace, node, phase, image, strategies) through
  `sys.intern`, and empty collections through one empty tuple, so 100k records stay small.
- `Scope.admits(resource, raw)` says whether an object belongs to this exporter: namespaces for
  VMIs, VMs and VMIMs; label selector and shard for VMIs only; KubeVirt CRs always. It reads raw
  fields too, so it raises `MalformedObject` on the same inputs `project` would.
  The label selector is `exporter.selectors`', the shard hash `exporter.sharding`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from exporter.model import (
    CONDITION_MISSING,
    OUTDATED_REASONS,
    UPDATE_METHODS,
    KubeVirt,
    OutdatedReason,
    PendingChange,
    Resource,
    UpdateMethod,
    Vm,
    Vmi,
    Vmim,
)
from exporter.rawobject import NOTHING, Reader, intern, intern_optional, open_object
from exporter.rawobject import MalformedObject as MalformedObject  # what project() raises
from exporter.selectors import LabelSelector
from exporter.sharding import shard_of
from exporter.timeparse import parse_go_duration
from exporter.volumes import volume_migration

# Label and annotation names, condition types and values, all from kubevirt/kubevirt:
# staging/src/kubevirt.io/api/core/v1/types.go.
OUTDATED_LAUNCHER_IMAGE_LABEL: Final = "kubevirt.io/outdatedLauncherImage"
WORKLOAD_UPDATE_MIGRATION_ANNOTATION: Final = "kubevirt.io/workloadUpdateMigration"
#: The updater creates its migrations with this generateName
#: (kubevirt/kubevirt: pkg/virt-controller/watch/workload-updater/workload-updater.go).
WORKLOAD_UPDATE_MIGRATION_PREFIX: Final = "kubevirt-workload-update-"
CONDITION_LIVE_MIGRATABLE: Final = "LiveMigratable"
CONDITION_AVAILABLE: Final = "Available"

#: Condition type -> (reason it makes a VMI change-outdated, whether any status counts).
#: The workload updater counts `HotVCPUChange` whatever its status and the others only when True
#: (kubevirt/kubevirt: pkg/virt-controller/watch/workload-updater/workload-updater.go,
#: `isHotplugInProgress`, `isVolumesUpdateInProgress`).
CHANGE_CONDITIONS: Final[Mapping[str, tuple[OutdatedReason, bool]]] = {
    "HotVCPUChange": ("hotplug_cpu", True),
    "HotMemoryChange": ("hotplug_memory", False),
    "MigrationRequired": ("migration_required", False),
    "VolumesChange": ("volumes_change", False),
}

#: Labels the HyperConverged operator puts on the KubeVirt CR it owns
#: (kubevirt/hyperconverged-cluster-operator: pkg/util/util.go `GetLabels`, pkg/util/consts.go:
#: `app.kubernetes.io/managed-by: hco-operator`, `app: kubevirt-hyperconverged`). Either one is
#: enough, so a CR whose recommended labels were trimmed is still recognised.
HCO_LABELS: Final[tuple[tuple[str, str], ...]] = (
    ("app.kubernetes.io/managed-by", "hco-operator"),
    ("app", "kubevirt-hyperconverged"),
)

#: Upstream defaults when `spec.workloadUpdateStrategy` leaves them unset (kubevirt/kubevirt:
#: pkg/virt-controller/watch/workload-updater/workload-updater.go `defaultBatchDeletionCount`,
#: `defaultBatchDeletionIntervalSeconds`; documented in staging/.../core/v1/types.go).
DEFAULT_BATCH_EVICTION_SIZE: Final = 10
DEFAULT_BATCH_EVICTION_INTERVAL_SECONDS: Final = 60.0


def project(resource: Resource, raw: Mapping[str, Any]) -> Vmi | Vm | Vmim | KubeVirt:
    """The record of a raw object of `resource`; raises MalformedObject."""
    return _PROJECTIONS[resource](raw)


def project_vmi(raw: Mapping[str, Any]) -> Vmi:
    """What the derivation reads of a VirtualMachineInstance; raises MalformedObject."""
    reader, meta, namespace, name = open_object("virtualmachineinstances", raw)
    spec = reader.mapping(raw, "spec", "")
    status = reader.mapping(raw, "status", "")
    labels = reader.string_map(meta, "labels", "metadata")
    migratable, not_migratable_reason, changes = _vmi_conditions(reader, status)
    return Vmi(
        namespace=namespace,
        name=name,
        phase=intern(reader.string(status, "phase", "status")),
        deleting=reader.timestamp(meta, "deletionTimestamp", "metadata") is not None,
        node=intern(reader.string(status, "nodeName", "status")),
        outdated_label=OUTDATED_LAUNCHER_IMAGE_LABEL in labels,
        launcher_image=intern(reader.string(status, "launcherContainerImageVersion", "status")),
        live_migratable=migratable,
        not_migratable_reason=not_migratable_reason,
        pending_changes=changes,
        migrating=_migrating(reader, status),
        volume_migration=volume_migration(reader, status, name),
        eviction_strategy=intern_optional(reader.string(spec, "evictionStrategy", "spec")),
        owner_vm=_owner_vm(reader, meta),
        running_since=_running_since(reader, status),
    )


def _vmi_conditions(
    reader: Reader, status: Mapping[str, Any]
) -> tuple[bool, str, tuple[PendingChange, ...]]:
    """(live-migratable, reason when not, pending changes in OUTDATED_REASONS order).

    The first condition of a type counts, as upstream's condition manager reads it
    (pkg/controller/conditions.go `GetCondition`), except that the VMI is live-migratable when
    any LiveMigratable condition is True, as `VirtualMachineInstance.IsMigratable()` reads it
    (staging/src/kubevirt.io/api/core/v1/types.go); found by the differential test.
    """
    migratable: bool | None = None
    reason = ""
    any_true = False
    found: dict[OutdatedReason, PendingChange] = {}
    seen: set[str] = set()
    for path, condition in reader.items(status, "conditions", "status"):
        kind = reader.string(condition, "type", path)
        if kind == CONDITION_LIVE_MIGRATABLE:
            any_true = any_true or reader.string(condition, "status", path) == "True"
        if kind is None or kind in seen:
            continue
        seen.add(kind)
        if kind == CONDITION_LIVE_MIGRATABLE:
            migratable = reader.string(condition, "status", path) == "True"
            # A False condition without a reason still needs a label value.
            reason = (
                "" if migratable else intern(reader.string(condition, "reason", path) or "Unknown")
            )
        elif kind in CHANGE_CONDITIONS:
            change_reason, any_status = CHANGE_CONDITIONS[kind]
            if any_status or reader.string(condition, "status", path) == "True":
                since = reader.timestamp(condition, "lastTransitionTime", path)
                found[change_reason] = PendingChange(change_reason, since)
    if migratable is None:
        return False, CONDITION_MISSING, _pending(found)
    if any_true:
        return True, "", _pending(found)
    return migratable, reason, _pending(found)


def _pending(found: Mapping[OutdatedReason, PendingChange]) -> tuple[PendingChange, ...]:
    if not found:
        return NOTHING
    return tuple(sorted(found.values(), key=lambda change: _REASON_ORDER[change.reason]))


_REASON_ORDER: Final[Mapping[str, int]] = {
    reason: index for index, reason in enumerate(OUTDATED_REASONS)
}


def _migrating(reader: Reader, status: Mapping[str, Any]) -> bool:
    """migrationState has a start and no end (kubevirt/kubevirt: pkg/util/migrations `IsMigrating`).

    Upstream also compares both with the current time; timestamps in the future are not a case
    the exporter tries to reproduce.
    """
    state = reader.mapping(status, "migrationState", "status")
    started = reader.timestamp(state, "startTimestamp", "status.migrationState")
    ended = reader.timestamp(state, "endTimestamp", "status.migrationState")
    return started is not None and ended is None


def _owner_vm(reader: Reader, meta: Mapping[str, Any]) -> str | None:
    """Name of the controlling VirtualMachine (upstream `metav1.GetControllerOf` + kind check,
    kubevirt/kubevirt: pkg/virt-controller/watch/vmi/lifecycle.go `hasOwnerVM`)."""
    for path, ref in reader.items(meta, "ownerReferences", "metadata"):
        if reader.boolean(ref, "controller", path):
            if reader.string(ref, "kind", path) != "VirtualMachine":
                return None
            return reader.string(ref, "name", path) or None
    return None


def _running_since(reader: Reader, status: Mapping[str, Any]) -> float | None:
    """The last Running entry of status.phaseTransitionTimestamps."""
    since: float | None = None
    for path, entry in reader.items(status, "phaseTransitionTimestamps", "status"):
        if reader.string(entry, "phase", path) == "Running":
            since = reader.timestamp(entry, "phaseTransitionTimestamp", path)
    return since


def project_vm(raw: Mapping[str, Any]) -> Vm:
    """What the derivation reads of a VirtualMachine; raises MalformedObject."""
    reader, _, namespace, name = open_object("virtualmachines", raw)
    spec = reader.mapping(raw, "spec", "")
    return Vm(
        namespace=namespace,
        name=name,
        run_strategy=intern_optional(reader.string(spec, "runStrategy", "spec")),
        running=reader.boolean(spec, "running", "spec"),
    )


def project_vmim(raw: Mapping[str, Any]) -> Vmim:
    """What the derivation reads of a VirtualMachineInstanceMigration; raises MalformedObject."""
    reader, meta, namespace, name = open_object("virtualmachineinstancemigrations", raw)
    spec = reader.mapping(raw, "spec", "")
    status = reader.mapping(raw, "status", "")
    annotations = reader.mapping(meta, "annotations", "metadata")
    return Vmim(
        namespace=namespace,
        name=name,
        vmi_name=reader.string(spec, "vmiName", "spec") or "",
        phase=intern(reader.string(status, "phase", "status")),
        workload_update=WORKLOAD_UPDATE_MIGRATION_ANNOTATION in annotations
        or name.startswith(WORKLOAD_UPDATE_MIGRATION_PREFIX),
    )


def project_kubevirt(raw: Mapping[str, Any]) -> KubeVirt:
    """What the derivation reads of a KubeVirt CR; raises MalformedObject.

    A `status.observedDeploymentConfig` that is a string but not a JSON object leaves both launcher
    images unknown (see the module contract); one that is not a string is malformed.
    """
    reader, meta, namespace, name = open_object("kubevirts", raw)
    spec = reader.mapping(raw, "spec", "")
    status = reader.mapping(raw, "status", "")
    strategy = reader.mapping(spec, "workloadUpdateStrategy", "spec")
    configuration = reader.mapping(spec, "configuration", "spec")
    migrations = reader.mapping(configuration, "migrations", "spec.configuration")
    labels = reader.string_map(meta, "labels", "metadata")
    config_json = reader.string(status, "observedDeploymentConfig", "status") or ""
    target_image, rebuilt_image = launcher_images(config_json)
    return KubeVirt(
        namespace=namespace,
        name=name,
        phase=intern(reader.string(status, "phase", "status")),
        observed_deployment_id=reader.string(status, "observedDeploymentID", "status") or "",
        target_deployment_id=reader.string(status, "targetDeploymentID", "status") or "",
        observed_version=intern(reader.string(status, "observedKubeVirtVersion", "status")),
        target_version=intern(reader.string(status, "targetKubeVirtVersion", "status")),
        update_methods=_update_methods(reader, strategy),
        batch_eviction_size=_batch_eviction_size(reader, strategy),
        batch_eviction_interval_seconds=_batch_eviction_interval(reader, strategy),
        eviction_strategy=intern_optional(
            reader.string(configuration, "evictionStrategy", "spec.configuration")
        ),
        parallel_migrations_per_cluster=reader.integer(
            migrations, "parallelMigrationsPerCluster", "spec.configuration.migrations"
        ),
        reported_outdated=reader.integer(
            status, "outdatedVirtualMachineInstanceWorkloads", "status"
        ),
        target_launcher_image=intern(target_image),
        rebuilt_launcher_image=intern(rebuilt_image),
        available_since=_available_since(reader, status),
        hco_managed=any(labels.get(label) == value for label, value in HCO_LABELS),
    )


def _update_methods(reader: Reader, strategy: Mapping[str, Any]) -> tuple[UpdateMethod, ...]:
    """Known workloadUpdateMethods in spec order, each once (unknown ones do nothing upstream)."""
    path = "spec.workloadUpdateStrategy.workloadUpdateMethods"
    methods: list[UpdateMethod] = []
    for index, method in enumerate(
        reader.array(strategy, "workloadUpdateMethods", "spec.workloadUpdateStrategy")
    ):
        if not isinstance(method, str):
            reader.wrong(f"{path}[{index}]", "a string", method)
        for known in UPDATE_METHODS:
            if method == known and known not in methods:
                methods.append(known)
    return tuple(methods) if methods else NOTHING


def _batch_eviction_size(reader: Reader, strategy: Mapping[str, Any]) -> int:
    size = reader.integer(strategy, "batchEvictionSize", "spec.workloadUpdateStrategy")
    return DEFAULT_BATCH_EVICTION_SIZE if size is None else size


def _batch_eviction_interval(reader: Reader, strategy: Mapping[str, Any]) -> float:
    text = reader.string(strategy, "batchEvictionInterval", "spec.workloadUpdateStrategy")
    if text is None:
        return DEFAULT_BATCH_EVICTION_INTERVAL_SECONDS
    seconds = parse_go_duration(text)
    if seconds is None:
        reader.fail(
            "spec.workloadUpdateStrategy.batchEvictionInterval",
            f"expected a Go duration such as '1m0s', got {text[:64]!r}",
        )
    return seconds


def _available_since(reader: Reader, status: Mapping[str, Any]) -> float | None:
    for path, condition in reader.items(status, "conditions", "status"):
        if reader.string(condition, "type", path) == CONDITION_AVAILABLE:
            return reader.timestamp(condition, "lastTransitionTime", path)
    return None


def launcher_images(deployment_config: str) -> tuple[str, str]:
    """(exact target, rebuilt target) launcher images of a KubeVirt deployment-config JSON string.

    The JSON keys are those of `KubeVirtDeploymentConfig` (kubevirt/kubevirt:
    pkg/virt-operator/util/config.go: `virtLauncherImage`, `registry`, `imagePrefix`,
    `kubeVirtVersion`). The exact target is `virtLauncherImage` (set on OLM/HCO/digest installs).
    The rebuilt one is `{registry}/{imagePrefix}virt-launcher:{kubeVirtVersion}`, the image
    virt-operator composes when `virtLauncherImage` is empty (pkg/virt-operator/resource/generate/
    components/deployments.go, `NewControllerDeployment`); it is "" when the exact target is known
    (it is then not what upstream runs) or when registry or version is missing. Either is "" when
    the string is not a JSON object or the field is not a string.
    """
    try:
        config = json.loads(deployment_config) if deployment_config else None
    except (ValueError, RecursionError):
        return "", ""
    if not isinstance(config, dict):
        return "", ""
    exact = _config_string(config, "virtLauncherImage")
    if exact:
        return exact, ""
    registry = _config_string(config, "registry")
    version = _config_string(config, "kubeVirtVersion")
    if not registry or not version:
        return "", ""
    prefix = _config_string(config, "imagePrefix")
    return "", f"{registry}/{prefix}virt-launcher:{version}"


def _config_string(config: Mapping[str, Any], key: str) -> str:
    value = config.get(key)
    return value if isinstance(value, str) else ""


_PROJECTIONS: Final[
    Mapping[Resource, Callable[[Mapping[str, Any]], Vmi | Vm | Vmim | KubeVirt]]
] = {
    "virtualmachineinstances": project_vmi,
    "virtualmachines": project_vm,
    "virtualmachineinstancemigrations": project_vmim,
    "kubevirts": project_kubevirt,
}


# --- scope ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Which objects this exporter watches: `--namespace`, `--label-selector`, `--shard`."""

    namespaces: frozenset[str] = frozenset()  # empty = all
    label_selector: LabelSelector | None = None  # VMIs only
    shard: int = 0  # VMIs only, by UID hash
    total_shards: int = 1

    def __post_init__(self) -> None:
        if self.total_shards < 1:
            raise ValueError(f"total shards must be at least 1, got {self.total_shards}")
        if not 0 <= self.shard < self.total_shards:
            raise ValueError(f"shard must be in [0, {self.total_shards - 1}], got {self.shard}")

    def admits(self, resource: Resource, raw: Mapping[str, Any]) -> bool:
        """The object belongs to this exporter; raises MalformedObject on fields it cannot read."""
        if resource == "kubevirts":
            return True
        reader, meta, namespace, _ = open_object(resource, raw)
        if self.namespaces and namespace not in self.namespaces:
            return False
        if resource != "virtualmachineinstances":
            return True
        if self.label_selector is not None and not self.label_selector.matches(
            reader.string_map(meta, "labels", "metadata")
        ):
            return False
        if self.total_shards > 1:
            uid = reader.string(meta, "uid", "metadata") or ""
            return shard_of(uid, self.total_shards) == self.shard
        return True

"""Raw KubeVirt objects -> records of `exporter.model`; what is in scope; which shard owns a VMI.

Contract:
- `project(resource, raw)` (and `project_vmi/vm/vmim/kubevirt`) is the only reader of raw object
  shapes. It returns a small immutable record or raises `MalformedObject`, whose text names the
  resource, the object (`namespace/name`, or `<unnamed>`) and the field path; it raises nothing
  else, whatever JSON-like value it is given.
- Only `metadata.name` is required. Every other field may be absent or null and then takes the
  default the record documents; present with the wrong type it is malformed. Timestamps are RFC 3339
  strings (a bad one is malformed) and become Unix seconds; `batchEvictionInterval` is a Go
  duration string (`1m0s`) and becomes seconds.
- `KubeVirt.status.observedDeploymentConfig` is an opaque JSON string to the API server; when it is
  not a JSON object (or its image fields are not strings) the launcher images it would give are
  unknown (""), and the CR is NOT malformed: its policy (methods, convergence) is still good.
- Records share their repeated strings (namespace, node, phase, image, strategies) through
  `sys.intern`, and empty collections through one empty tuple, so 100k records stay small.
- `LabelSelector.parse` accepts the Kubernetes label-selector grammar (`k=v`, `k==v`, `k!=v`,
  `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>n`, `k<n`) and rejects anything else with a
  `ValueError` naming the bad term.
- `Scope.admits(resource, raw)` says whether an object belongs to this exporter: namespaces for
  VMIs, VMs and VMIMs; label selector and shard for VMIs only; KubeVirt CRs always. It reads raw
  fields too, so it raises `MalformedObject` on the same inputs `project` would.
- `shard_of(uid, total)` assigns a VMI to a shard exactly as kube-state-metrics shards objects.
"""

from __future__ import annotations

import calendar
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, NoReturn

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

_NOTHING: Final[tuple[Any, ...]] = ()
_EMPTY: Final[Mapping[str, Any]] = {}


class MalformedObject(ValueError):
    """A raw object that cannot be projected.

    str() names resource, namespace/name (or '<unnamed>'), the field path and the problem, e.g.
    'virtualmachineinstances default/vm-1: status.phase: expected a string, got integer'.
    """

    def __init__(self, resource: Resource, key: str, field: str, problem: str) -> None:
        super().__init__(f"{resource} {key}: {field}: {problem}")
        self.resource: Resource = resource
        #: "namespace/name", "name" without a namespace, "<unnamed>" without a usable name.
        self.key = key
        #: Dotted path of the offending field, e.g. "status.conditions[2].status".
        self.field = field
        self.problem = problem


# --- typed reads ---------------------------------------------------------------------------


def _json_type(value: object) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


class _Reader:
    """Typed reads from one raw object; every failure raises MalformedObject naming the path.

    Field paths are put together only when something fails, so a good field costs a dict lookup
    and an isinstance check.
    """

    __slots__ = ("key", "resource")

    def __init__(self, resource: Resource, key: str) -> None:
        self.resource: Resource = resource
        self.key = key

    def fail(self, path: str, problem: str) -> NoReturn:
        raise MalformedObject(self.resource, self.key, path, problem)

    def wrong(self, path: str, expected: str, value: object) -> NoReturn:
        self.fail(path, f"expected {expected}, got {_json_type(value)}")

    def mapping(self, parent: Mapping[str, Any], name: str, path: str) -> Mapping[str, Any]:
        value = parent.get(name)
        if value is None:
            return _EMPTY
        if not isinstance(value, Mapping):
            self.wrong(_join(path, name), "an object", value)
        return value

    def array(self, parent: Mapping[str, Any], name: str, path: str) -> Sequence[Any]:
        value = parent.get(name)
        if value is None:
            return _NOTHING
        if not isinstance(value, list | tuple):
            self.wrong(_join(path, name), "an array", value)
        return value

    def string(self, parent: Mapping[str, Any], name: str, path: str) -> str | None:
        value = parent.get(name)
        if value is None or isinstance(value, str):
            return value
        self.wrong(_join(path, name), "a string", value)

    def boolean(self, parent: Mapping[str, Any], name: str, path: str) -> bool | None:
        value = parent.get(name)
        if value is None or isinstance(value, bool):
            return value
        self.wrong(_join(path, name), "a boolean", value)

    def integer(self, parent: Mapping[str, Any], name: str, path: str) -> int | None:
        value = parent.get(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        self.wrong(_join(path, name), "an integer", value)

    def timestamp(self, parent: Mapping[str, Any], name: str, path: str) -> float | None:
        text = self.string(parent, name, path)
        if text is None:
            return None
        seconds = parse_rfc3339(text)
        if seconds is None:
            self.fail(_join(path, name), f"expected an RFC 3339 timestamp, got {text[:64]!r}")
        return seconds

    def items(
        self, parent: Mapping[str, Any], name: str, path: str
    ) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """The objects of an array field, each with its path."""
        for index, item in enumerate(self.array(parent, name, path)):
            item_path = f"{_join(path, name)}[{index}]"
            if not isinstance(item, Mapping):
                self.wrong(item_path, "an object", item)
            yield item_path, item

    def string_map(self, parent: Mapping[str, Any], name: str, path: str) -> Mapping[str, str]:
        """A map of strings (labels): every key and value is checked."""
        value = self.mapping(parent, name, path)
        for key, item in value.items():
            if not isinstance(key, str):
                self.wrong(f"{_join(path, name)}", "string keys", key)
            if not isinstance(item, str):
                self.wrong(f"{_join(path, name)}[{key!r}]", "a string", item)
        return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _open(resource: Resource, raw: object) -> tuple[_Reader, Mapping[str, Any], str, str]:
    """Reader, metadata, namespace and name of a raw object (the name is required)."""
    if not isinstance(raw, Mapping):
        _Reader(resource, "<unnamed>").wrong("(object)", "an object", raw)
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    key_ns = namespace if isinstance(namespace, str) and namespace else ""
    key_name = name if isinstance(name, str) and name else "<unnamed>"
    reader = _Reader(resource, f"{key_ns}/{key_name}" if key_ns else key_name)
    meta = reader.mapping(raw, "metadata", "")
    checked_name = reader.string(meta, "name", "metadata")
    if not checked_name:
        reader.fail("metadata.name", "missing")
    checked_namespace = reader.string(meta, "namespace", "metadata") or ""
    return reader, meta, sys.intern(checked_namespace), checked_name


def _intern(value: str | None) -> str:
    return sys.intern(value) if value else ""


def _intern_optional(value: str | None) -> str | None:
    return sys.intern(value) if value else None


# --- timestamps and durations --------------------------------------------------------------

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


@lru_cache(maxsize=8192)
def parse_rfc3339(text: str) -> float | None:
    """Unix seconds of an RFC 3339 timestamp (`metav1.Time` and `MicroTime`), None if it is not one.

    Cached: the same transition times recur in every update of an object.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if year < 1 or not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    seconds = float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    if match.group(7):
        seconds += float("0" + match.group(7))
    if match.group(9):
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            return None
        offset = offset_hours * 3600 + offset_minutes * 60
        seconds += -offset if match.group(9) == "+" else offset
    return seconds


#: Nanoseconds per unit of Go's `time.ParseDuration` ("µs" is U+00B5, "μs" U+03BC).
_GO_DURATION_UNITS: Final[Mapping[str, int]] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_GO_DURATION_TERM: Final = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)", re.ASCII)
_GO_DURATION_MAX_NS: Final = 2**63 - 1


def parse_go_duration(text: str) -> float | None:
    """Seconds of a Go duration string (`time.ParseDuration`: "1m0s", "1.5h", "-300ms", "0").

    None when Go would reject it (no unit, unknown unit, empty, or beyond int64 nanoseconds).
    Fractions of a nanosecond are truncated as Go does.
    """
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text[1:] if text[:1] == "+" else text)
    if body == "0":
        return 0.0
    if not body:
        return None
    total, position = 0, 0
    while position < len(body):
        match = _GO_DURATION_TERM.match(body, position)
        if match is None or (not match.group(1) and not match.group(2)):
            return None
        # Beyond 20 digits the whole part overflows int64 and further fraction digits are below
        # a nanosecond; capping them also keeps int() away from huge digit strings.
        whole, fraction, unit = match.group(1), (match.group(2) or "")[:20], match.group(3)
        if len(whole) > 20:
            return None
        scale = _GO_DURATION_UNITS[unit]
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        position = match.end()
    if total > _GO_DURATION_MAX_NS:
        return None
    return sign * total / 1e9


# --- projections ---------------------------------------------------------------------------


def project(resource: Resource, raw: Mapping[str, Any]) -> Vmi | Vm | Vmim | KubeVirt:
    """The record of a raw object of `resource`; raises MalformedObject."""
    return _PROJECTIONS[resource](raw)


def project_vmi(raw: Mapping[str, Any]) -> Vmi:
    """What the derivation reads of a VirtualMachineInstance; raises MalformedObject."""
    reader, meta, namespace, name = _open("virtualmachineinstances", raw)
    spec = reader.mapping(raw, "spec", "")
    status = reader.mapping(raw, "status", "")
    labels = reader.string_map(meta, "labels", "metadata")
    migratable, not_migratable_reason, changes = _vmi_conditions(reader, status)
    return Vmi(
        namespace=namespace,
        name=name,
        phase=_intern(reader.string(status, "phase", "status")),
        deleting=reader.timestamp(meta, "deletionTimestamp", "metadata") is not None,
        node=_intern(reader.string(status, "nodeName", "status")),
        outdated_label=OUTDATED_LAUNCHER_IMAGE_LABEL in labels,
        launcher_image=_intern(reader.string(status, "launcherContainerImageVersion", "status")),
        live_migratable=migratable,
        not_migratable_reason=not_migratable_reason,
        pending_changes=changes,
        migrating=_migrating(reader, status),
        volume_migration=bool(reader.array(status, "migratedVolumes", "status")),
        eviction_strategy=_intern_optional(reader.string(spec, "evictionStrategy", "spec")),
        owner_vm=_owner_vm(reader, meta),
        running_since=_running_since(reader, status),
    )


def _vmi_conditions(
    reader: _Reader, status: Mapping[str, Any]
) -> tuple[bool, str, tuple[PendingChange, ...]]:
    """(live-migratable, reason when not, pending changes in OUTDATED_REASONS order).

    The first condition of a type counts, as upstream's condition manager reads it.
    """
    migratable: bool | None = None
    reason = ""
    found: dict[OutdatedReason, PendingChange] = {}
    seen: set[str] = set()
    for path, condition in reader.items(status, "conditions", "status"):
        kind = reader.string(condition, "type", path)
        if kind is None or kind in seen:
            continue
        seen.add(kind)
        if kind == CONDITION_LIVE_MIGRATABLE:
            migratable = reader.string(condition, "status", path) == "True"
            # A False condition without a reason still needs a label value.
            reason = (
                "" if migratable else _intern(reader.string(condition, "reason", path) or "Unknown")
            )
        elif kind in CHANGE_CONDITIONS:
            change_reason, any_status = CHANGE_CONDITIONS[kind]
            if any_status or reader.string(condition, "status", path) == "True":
                since = reader.timestamp(condition, "lastTransitionTime", path)
                found[change_reason] = PendingChange(change_reason, since)
    if migratable is None:
        return False, CONDITION_MISSING, _pending(found)
    return migratable, reason, _pending(found)


def _pending(found: Mapping[OutdatedReason, PendingChange]) -> tuple[PendingChange, ...]:
    if not found:
        return _NOTHING
    return tuple(sorted(found.values(), key=lambda change: _REASON_ORDER[change.reason]))


_REASON_ORDER: Final[Mapping[str, int]] = {
    reason: index for index, reason in enumerate(OUTDATED_REASONS)
}


def _migrating(reader: _Reader, status: Mapping[str, Any]) -> bool:
    """migrationState has a start and no end (kubevirt/kubevirt: pkg/util/migrations `IsMigrating`).

    Upstream also compares both with the current time; timestamps in the future are not a case
    the exporter tries to reproduce.
    """
    state = reader.mapping(status, "migrationState", "status")
    started = reader.timestamp(state, "startTimestamp", "status.migrationState")
    ended = reader.timestamp(state, "endTimestamp", "status.migrationState")
    return started is not None and ended is None


def _owner_vm(reader: _Reader, meta: Mapping[str, Any]) -> str | None:
    """Name of the controlling VirtualMachine (upstream `metav1.GetControllerOf` + kind check,
    kubevirt/kubevirt: pkg/virt-controller/watch/vmi/lifecycle.go `hasOwnerVM`)."""
    for path, ref in reader.items(meta, "ownerReferences", "metadata"):
        if reader.boolean(ref, "controller", path):
            if reader.string(ref, "kind", path) != "VirtualMachine":
                return None
            return reader.string(ref, "name", path) or None
    return None


def _running_since(reader: _Reader, status: Mapping[str, Any]) -> float | None:
    """The last Running entry of status.phaseTransitionTimestamps."""
    since: float | None = None
    for path, entry in reader.items(status, "phaseTransitionTimestamps", "status"):
        if reader.string(entry, "phase", path) == "Running":
            since = reader.timestamp(entry, "phaseTransitionTimestamp", path)
    return since


def project_vm(raw: Mapping[str, Any]) -> Vm:
    """What the derivation reads of a VirtualMachine; raises MalformedObject."""
    reader, _, namespace, name = _open("virtualmachines", raw)
    spec = reader.mapping(raw, "spec", "")
    return Vm(
        namespace=namespace,
        name=name,
        run_strategy=_intern_optional(reader.string(spec, "runStrategy", "spec")),
        running=reader.boolean(spec, "running", "spec"),
    )


def project_vmim(raw: Mapping[str, Any]) -> Vmim:
    """What the derivation reads of a VirtualMachineInstanceMigration; raises MalformedObject."""
    reader, meta, namespace, name = _open("virtualmachineinstancemigrations", raw)
    spec = reader.mapping(raw, "spec", "")
    status = reader.mapping(raw, "status", "")
    annotations = reader.mapping(meta, "annotations", "metadata")
    return Vmim(
        namespace=namespace,
        name=name,
        vmi_name=reader.string(spec, "vmiName", "spec") or "",
        phase=_intern(reader.string(status, "phase", "status")),
        workload_update=WORKLOAD_UPDATE_MIGRATION_ANNOTATION in annotations
        or name.startswith(WORKLOAD_UPDATE_MIGRATION_PREFIX),
    )


def project_kubevirt(raw: Mapping[str, Any]) -> KubeVirt:
    """What the derivation reads of a KubeVirt CR; raises MalformedObject.

    A `status.observedDeploymentConfig` that is a string but not a JSON object leaves both launcher
    images unknown (see the module contract); one that is not a string is malformed.
    """
    reader, meta, namespace, name = _open("kubevirts", raw)
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
        phase=_intern(reader.string(status, "phase", "status")),
        observed_deployment_id=reader.string(status, "observedDeploymentID", "status") or "",
        target_deployment_id=reader.string(status, "targetDeploymentID", "status") or "",
        observed_version=_intern(reader.string(status, "observedKubeVirtVersion", "status")),
        target_version=_intern(reader.string(status, "targetKubeVirtVersion", "status")),
        update_methods=_update_methods(reader, strategy),
        batch_eviction_size=_batch_eviction_size(reader, strategy),
        batch_eviction_interval_seconds=_batch_eviction_interval(reader, strategy),
        eviction_strategy=_intern_optional(
            reader.string(configuration, "evictionStrategy", "spec.configuration")
        ),
        parallel_migrations_per_cluster=reader.integer(
            migrations, "parallelMigrationsPerCluster", "spec.configuration.migrations"
        ),
        reported_outdated=reader.integer(
            status, "outdatedVirtualMachineInstanceWorkloads", "status"
        ),
        target_launcher_image=_intern(target_image),
        rebuilt_launcher_image=_intern(rebuilt_image),
        available_since=_available_since(reader, status),
        hco_managed=any(labels.get(label) == value for label, value in HCO_LABELS),
    )


def _update_methods(reader: _Reader, strategy: Mapping[str, Any]) -> tuple[UpdateMethod, ...]:
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
    return tuple(methods) if methods else _NOTHING


def _batch_eviction_size(reader: _Reader, strategy: Mapping[str, Any]) -> int:
    size = reader.integer(strategy, "batchEvictionSize", "spec.workloadUpdateStrategy")
    return DEFAULT_BATCH_EVICTION_SIZE if size is None else size


def _batch_eviction_interval(reader: _Reader, strategy: Mapping[str, Any]) -> float:
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


def _available_since(reader: _Reader, status: Mapping[str, Any]) -> float | None:
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


# --- label selectors -----------------------------------------------------------------------

#: Label key: optional DNS-subdomain prefix and '/', then a name of at most 63 characters
#: (k8s.io/apimachinery: pkg/util/validation `IsQualifiedName`).
_LABEL_NAME: Final = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY: Final = re.compile(
    rf"(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}"
)
_LABEL_VALUE: Final = re.compile(rf"(?:{_LABEL_NAME})?")
_SET_TERM: Final = re.compile(r"(\S+?)\s+(in|notin)\s*\((.*)\)", re.DOTALL)
_COMPARE_TERM: Final = re.compile(r"([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(.*)", re.DOTALL)
_INTEGER: Final = re.compile(r"-?[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a label selector."""

    key: str
    #: "=", "!=", "in", "notin", "exists", "!", ">" or "<" ("==" is stored as "=").
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics: `!=` and `notin` also match objects without the label."""
        value = labels.get(self.key)
        match self.operator:
            case "exists":
                return value is not None
            case "!":
                return value is None
            case "=" | "in":
                return value in self.values
            case "!=" | "notin":
                return value not in self.values
            case _:
                return self._compare(value)

    def _compare(self, value: str | None) -> bool:
        if value is None or _INTEGER.fullmatch(value) is None:
            return False
        (bound,) = self.values
        return int(value) > int(bound) if self.operator == ">" else int(value) < int(bound)


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed `--label-selector`; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    @staticmethod
    def parse(text: str) -> LabelSelector:
        """Parse the Kubernetes selector grammar; raises ValueError naming the bad term."""
        return LabelSelector(tuple(_requirement(term) for term in _terms(text)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """All requirements hold for `labels`."""
        return all(requirement.matches(labels) for requirement in self.requirements)


def _terms(text: str) -> list[str]:
    """Split on the commas that are not inside a value set."""
    terms: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
            if depth > 1:
                raise ValueError(f"invalid label selector {text!r}: nested '('")
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"invalid label selector {text!r}: unbalanced ')'")
        elif char == "," and depth == 0:
            terms.append(text[start:index])
            start = index + 1
    if depth:
        raise ValueError(f"invalid label selector {text!r}: unbalanced '('")
    terms.append(text[start:])
    if len(terms) == 1 and not terms[0].strip():
        return []
    return terms


def _requirement(term: str) -> Requirement:
    text = term.strip()
    if not text:
        raise _bad_term(term, "empty term")
    if text.startswith("!"):
        return Requirement(_key(text[1:].strip(), term), "!")
    if match := _SET_TERM.fullmatch(text):
        values = [value.strip() for value in match.group(3).split(",")]
        if values == [""]:
            raise _bad_term(term, f"'{match.group(2)}' needs at least one value")
        return Requirement(
            _key(match.group(1), term),
            match.group(2),
            frozenset(_value(value, term) for value in values),
        )
    if match := _COMPARE_TERM.fullmatch(text):
        key, operator, value = _key(match.group(1), term), match.group(2), match.group(3).strip()
        if operator in (">", "<"):
            if _INTEGER.fullmatch(value) is None:
                raise _bad_term(term, f"'{operator}' needs an integer, got {value!r}")
            return Requirement(key, operator, frozenset((value,)))
        return Requirement(
            key, "=" if operator == "==" else operator, frozenset((_value(value, term),))
        )
    return Requirement(_key(text, term), "exists")


def _key(key: str, term: str) -> str:
    if _LABEL_KEY.fullmatch(key) is None or len(key.partition("/")[0]) > 253:
        raise _bad_term(term, f"{key!r} is not a valid label key")
    return key


def _value(value: str, term: str) -> str:
    if _LABEL_VALUE.fullmatch(value) is None:
        raise _bad_term(term, f"{value!r} is not a valid label value")
    return value


def _bad_term(term: str, why: str) -> ValueError:
    return ValueError(f"invalid label selector term {term.strip()!r}: {why}")


# --- scope and shards ----------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Which objects this exporter watches (SPEC section 2 "Scope", section 5 "Sharding")."""

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
        reader, meta, namespace, _ = _open(resource, raw)
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


def shard_of(uid: str, total_shards: int) -> int:
    """The shard that owns the object with this UID, as kube-state-metrics shards.

    kube-state-metrics keeps an object when `jump.Hash(fnv64a(uid), totalShards) == shard`
    (kubernetes/kube-state-metrics: pkg/sharding/listwatch.go `sharding.keep`, unchanged since
    sharding was introduced): FNV-1a 64 of the UID bytes, then Jump Consistent Hash.
    """
    if total_shards < 1:
        raise ValueError(f"total shards must be at least 1, got {total_shards}")
    return jump_hash(fnv1a_64(uid.encode()), total_shards)


_FNV64_OFFSET: Final = 0xCBF29CE484222325
_FNV64_PRIME: Final = 0x100000001B3
_U64: Final = 0xFFFFFFFFFFFFFFFF


def fnv1a_64(data: bytes) -> int:
    """FNV-1a 64-bit hash (Fowler/Noll/Vo; Go's `hash/fnv.New64a`)."""
    value = _FNV64_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV64_PRIME) & _U64
    return value


_JUMP_MULTIPLIER: Final = 2862933555777941757


def jump_hash(key: int, buckets: int) -> int:
    """Jump Consistent Hash of a 64-bit key into [0, buckets) (Lamping & Veach, 2014,
    arXiv:1406.2294). The float arithmetic is IEEE double, as in the paper's reference code."""
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * _JUMP_MULTIPLIER + 1) & _U64
        candidate = int(float(bucket + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return bucket

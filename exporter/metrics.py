"""The metric table: every family the exporter serves, declared once.

Contract:
- `FAMILIES` lists each family (METRICS.md) exactly once, in exposition order: per-VMI dense,
  per-VMI sparse, aggregates, per-KubeVirt, then the exporter's self-metrics. Each `Family` has
  its exposed name (counters include `_total`), type, label names in exposition order and a
  verbose HELP. Rendering (`render.py`, `selfmetrics.py`) and METRICS.md
  (`scripts/metrics_doc.py`) read this table and nothing else.
- `MetricFilter` is `--metric-allowlist` / `--metric-denylist` with kube-state-metrics semantics:
  comma-separated regular expressions, each matching a whole family name; allow and deny are
  mutually exclusive. Aggregates and self-metrics are always served whatever the lists say, so a
  fleet that drops every per-VMI family still has its counts and its health.

Long because it is the table: one declaration per family, each with its full HELP.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

MetricType = Literal["gauge", "counter"]

#: Where a family sits; decides whether the allow/deny lists may drop it.
Group = Literal["vmi", "vmi_sparse", "aggregate", "kubevirt", "exporter"]

#: Groups the allow/deny lists cannot drop.
ALWAYS_SERVED: Final[frozenset[Group]] = frozenset({"aggregate", "exporter"})

#: Heading of each group in METRICS.md, in table order.
GROUP_TITLES: Final[dict[Group, str]] = {
    "vmi": "Per VMI, dense (one series per VMI in the cache, whatever its phase)",
    "vmi_sparse": "Per VMI, sparse (a series only while its condition holds)",
    "aggregate": "Aggregates (always served, whatever the allow/deny lists say)",
    "kubevirt": "Per KubeVirt CR (shard 0 only)",
    "exporter": "Exporter self-metrics (always served)",
}


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: what is exposed under `name`, and what it means."""

    name: str
    type: MetricType
    group: Group
    labels: tuple[str, ...]
    help: str

    @property
    def filterable(self) -> bool:
        """The allow/deny lists may drop this family."""
        return self.group not in ALWAYS_SERVED


_VMI_IDENTITY = "Labels namespace and name identify the VirtualMachineInstance."

VMI_INFO: Final = Family(
    "kubevirt_update_vmi_info",
    "gauge",
    "vmi",
    ("namespace", "name", "node", "owner_kind", "run_strategy", "eviction_strategy"),
    "Always 1: one series per VirtualMachineInstance in the exporter's cache, whatever its "
    "phase, carrying what decides how it can be updated. " + _VMI_IDENTITY + " node is "
    "status.nodeName (empty while unscheduled); owner_kind is VirtualMachine, or empty for a "
    "standalone VMI; run_strategy is the owner VM's effective run strategy (spec.runStrategy, "
    "else Always/Halted from the deprecated spec.running; empty for a standalone VMI); "
    "eviction_strategy is the effective eviction strategy (the VMI's, else the KubeVirt CR's "
    "spec.configuration.evictionStrategy, else None). Join it on namespace and name to bring "
    "these labels to the other per-VMI series.",
)
VMI_OUTDATED: Final = Family(
    "kubevirt_update_vmi_outdated",
    "gauge",
    "vmi",
    ("namespace", "name"),
    "1 when the VMI is outdated the way virt-controller's workload updater counts it: phase "
    "Running, not being deleted, and either its virt-launcher image is not the control plane's "
    "target (the kubevirt.io/outdatedLauncherImage label, or a differing "
    "status.launcherContainerImageVersion) or a hotplug, MigrationRequired or VolumesChange "
    "condition asks for a migration while it is not already migrating; 0 otherwise. One series "
    "per VMI in the cache; the labels never change with the value. " + _VMI_IDENTITY,
)
VMI_LIVE_MIGRATABLE: Final = Family(
    "kubevirt_update_vmi_live_migratable",
    "gauge",
    "vmi",
    ("namespace", "name"),
    "1 when the VMI's LiveMigratable condition is True (it can be moved to an updated "
    "virt-launcher pod without downtime), 0 otherwise, including when the condition is missing. "
    "One series per VMI in the cache; the labels never change with the value. " + _VMI_IDENTITY,
)
VMI_OUTDATED_REASON: Final = Family(
    "kubevirt_update_vmi_outdated_reason",
    "gauge",
    "vmi_sparse",
    ("namespace", "name", "reason"),
    "1 while the VMI is outdated, with why: reason is the first of launcher_image (runs in a "
    "virt-launcher image other than the target), hotplug_cpu (HotVCPUChange condition), "
    "hotplug_memory (HotMemoryChange=True), migration_required (MigrationRequired=True), "
    "volumes_change (VolumesChange=True). Absent while the VMI is not outdated. " + _VMI_IDENTITY,
)
VMI_NOT_LIVE_MIGRATABLE: Final = Family(
    "kubevirt_update_vmi_not_live_migratable",
    "gauge",
    "vmi_sparse",
    ("namespace", "name", "reason"),
    "1 while the VMI is not live-migratable, with why: reason is the reason of its "
    "LiveMigratable condition (e.g. InterfaceNotLiveMigratable, DisksNotLiveMigratable, "
    "HostDeviceNotLiveMigratable, CPUModeLiveMigratable, SEVNotLiveMigratable), or "
    "ConditionMissing when the VMI has no such condition. Absent while the VMI is "
    "live-migratable. " + _VMI_IDENTITY,
)
VMI_UPDATE_STATE: Final = Family(
    "kubevirt_update_vmi_update_state",
    "gauge",
    "vmi_sparse",
    ("namespace", "name", "method", "action"),
    "1 while the VMI is outdated, with what automation will do and what a human should do. "
    "method: in_progress (a migration of this VMI is under way), live_migrate (the workload "
    "updater will live-migrate it), evict (its pod will be evicted and it comes back updated), "
    "evict_stops (its pod will be evicted and it stays down: run strategy not Always, or a "
    "standalone VMI), none (nothing will ever update it). action: wait (automation handles it), "
    "migrate (create a VirtualMachineInstanceMigration), restart (virtctl restart the owner VM), "
    "manual (no safe one-step fix: standalone VMI, run strategy Halted/Once/WaitAsReceiver, or "
    "a volume change pending). action is wait exactly when method is in_progress, live_migrate "
    "or evict. Absent while the VMI is not outdated. " + _VMI_IDENTITY,
)
VMI_OUTDATED_SINCE: Final = Family(
    "kubevirt_update_vmi_outdated_since_timestamp_seconds",
    "gauge",
    "vmi_sparse",
    ("namespace", "name"),
    "Approximate Unix time at which the VMI became outdated: for launcher_image, the later of "
    "its transition to Running and the KubeVirt CR's Available condition transition; for the "
    "change reasons, the lastTransitionTime of the matching condition. Present while the VMI is "
    "outdated and the time is known. " + _VMI_IDENTITY,
)
VMI_UPDATE_MIGRATION_FAILURES: Final = Family(
    "kubevirt_update_vmi_update_migration_failures",
    "gauge",
    "vmi_sparse",
    ("namespace", "name"),
    "Number of failed VirtualMachineInstanceMigrations the workload updater created for this "
    "VMI (annotation kubevirt.io/workloadUpdateMigration or name prefix "
    "kubevirt-workload-update-) that still exist. Upstream keeps retrying, so a VMI whose "
    "update migrations keep failing shows as in_progress or live_migrate forever; this count "
    "is what tells it apart. Present while the count is above 0. " + _VMI_IDENTITY,
)
OUTDATED_VMIS: Final = Family(
    "kubevirt_update_outdated_vmis",
    "gauge",
    "aggregate",
    ("namespace", "reason", "method", "action"),
    "Number of outdated VMIs per namespace, reason, method and action (the labels of "
    "kubevirt_update_vmi_outdated_reason and kubevirt_update_vmi_update_state). Like "
    "virt-controller's kubevirt_vmi_number_of_outdated it is recounted only while the KubeVirt "
    "control plane is converged (phase Deployed, observed deployment ID equal to the target) "
    "and holds its last value otherwise, so it does not jump while an update rolls out; before "
    "the first converged state it has no series. A combination without VMIs has no series. "
    "Always served, whatever the allow/deny lists say.",
)
VMIS: Final = Family(
    "kubevirt_update_vmis",
    "gauge",
    "aggregate",
    ("namespace",),
    "Number of VirtualMachineInstances in the exporter's cache per namespace, any phase. A "
    "namespace without VMIs has no series. Always served, whatever the allow/deny lists say.",
)
NOT_LIVE_MIGRATABLE_VMIS: Final = Family(
    "kubevirt_update_not_live_migratable_vmis",
    "gauge",
    "aggregate",
    ("namespace", "reason"),
    "Number of VMIs in the cache that are not live-migratable, per namespace and reason (the "
    "LiveMigratable condition's reason, or ConditionMissing). These VMIs cannot be moved to an "
    "updated virt-launcher without downtime. A combination without VMIs has no series. Always "
    "served, whatever the allow/deny lists say.",
)
VMIS_BY_LAUNCHER_IMAGE: Final = Family(
    "kubevirt_update_vmis_by_launcher_image",
    "gauge",
    "aggregate",
    ("image",),
    "Number of Running VMIs per current virt-launcher image (status.launcherContainerImageVersion"
    ", empty while not yet reported): the progress of an update across the fleet. An image no "
    "Running VMI uses has no series. Always served, whatever the allow/deny lists say.",
)
_CR_IDENTITY = "Labels namespace and name identify the KubeVirt CR. Served by shard 0 only."
KUBEVIRT_INFO: Final = Family(
    "kubevirt_update_kubevirt_info",
    "gauge",
    "kubevirt",
    (
        "namespace",
        "name",
        "observed_version",
        "target_version",
        "target_launcher_image",
        "managed_by",
    ),
    "Always 1: one series per KubeVirt CR. observed_version and target_version are "
    "status.observedKubeVirtVersion and status.targetKubeVirtVersion; target_launcher_image is "
    "the exact virt-launcher image the control plane deploys (virtLauncherImage of "
    "status.observedDeploymentConfig, empty when not published); managed_by is hco when the "
    "HyperConverged operator manages the CR (edit the HyperConverged CR, not this one: HCO "
    "reverts direct edits), else empty. " + _CR_IDENTITY,
)
KUBEVIRT_CONVERGED: Final = Family(
    "kubevirt_update_kubevirt_converged",
    "gauge",
    "kubevirt",
    ("namespace", "name"),
    "1 when the KubeVirt control plane is converged (status.phase Deployed and "
    "observedDeploymentID equal to targetDeploymentID): the only state in which the workload "
    "updater acts and recounts outdated VMIs; 0 while an install or update rolls out. "
    + _CR_IDENTITY,
)
KUBEVIRT_METHOD_ENABLED: Final = Family(
    "kubevirt_update_kubevirt_method_enabled",
    "gauge",
    "kubevirt",
    ("namespace", "name", "method"),
    "1 when the workload update method is listed in "
    "spec.workloadUpdateStrategy.workloadUpdateMethods, else 0; method is LiveMigrate or Evict "
    "(both series always present). With neither enabled nothing updates outdated VMIs "
    "automatically (plain KubeVirt's default; HCO enables LiveMigrate). " + _CR_IDENTITY,
)
KUBEVIRT_BATCH_EVICTION_SIZE: Final = Family(
    "kubevirt_update_kubevirt_batch_eviction_size",
    "gauge",
    "kubevirt",
    ("namespace", "name"),
    "spec.workloadUpdateStrategy.batchEvictionSize: how many VMIs the workload updater evicts "
    "per batch when the Evict method is enabled (upstream default 10 when unset). " + _CR_IDENTITY,
)
KUBEVIRT_BATCH_EVICTION_INTERVAL: Final = Family(
    "kubevirt_update_kubevirt_batch_eviction_interval_seconds",
    "gauge",
    "kubevirt",
    ("namespace", "name"),
    "spec.workloadUpdateStrategy.batchEvictionInterval in seconds: the pause between eviction "
    "batches (upstream default 60 when unset). " + _CR_IDENTITY,
)
KUBEVIRT_REPORTED_OUTDATED: Final = Family(
    "kubevirt_update_kubevirt_reported_outdated_vmis",
    "gauge",
    "kubevirt",
    ("namespace", "name"),
    "status.outdatedVirtualMachineInstanceWorkloads: the outdated VMI count virt-controller "
    "last wrote into the CR, to compare with sum(kubevirt_update_outdated_vmis). Present while "
    "the status field is set, and only from an exporter not scoped by --namespace or "
    "--label-selector (a scoped count cannot be compared). " + _CR_IDENTITY,
)
KUBEVIRT_CRS: Final = Family(
    "kubevirt_update_kubevirt_crs",
    "gauge",
    "kubevirt",
    (),
    "Number of KubeVirt CRs the exporter sees cluster-wide. Upstream acts only when there is "
    "exactly one; with 0 or more than 1 no update method is in force and outdated VMIs are "
    "reported with method none. Served by shard 0 only.",
)
EXPORTER_BUILD_INFO: Final = Family(
    "kubevirt_update_exporter_build_info",
    "gauge",
    "exporter",
    ("version", "python_version"),
    "Always 1; version is the exporter's version and python_version the interpreter's.",
)
EXPORTER_SYNCED: Final = Family(
    "kubevirt_update_exporter_synced",
    "gauge",
    "exporter",
    ("resource",),
    "1 once the first full list of the resource (virtualmachineinstances, virtualmachines, "
    "virtualmachineinstancemigrations, kubevirts) has completed, else 0. /readyz answers 503 "
    "until every resource is synced; series derived from an unsynced resource are incomplete.",
)
EXPORTER_OBJECTS: Final = Family(
    "kubevirt_update_exporter_objects",
    "gauge",
    "exporter",
    ("resource",),
    "Number of objects of the resource in the exporter's cache (after --namespace, "
    "--label-selector and shard filtering).",
)
EXPORTER_WATCH_EVENTS: Final = Family(
    "kubevirt_update_exporter_watch_events_total",
    "counter",
    "exporter",
    ("resource", "type"),
    "Watch events received per resource and event type (ADDED, MODIFIED, DELETED, BOOKMARK, "
    "ERROR). Objects of a full list are not counted here.",
)
EXPORTER_LIST: Final = Family(
    "kubevirt_update_exporter_list_total",
    "counter",
    "exporter",
    ("resource", "result"),
    "Full (paginated) lists of the resource per result: success, error, forbidden (RBAC denies "
    "list), not_found (the CRD is not installed), gone (410: the continue token expired).",
)
EXPORTER_WATCH: Final = Family(
    "kubevirt_update_exporter_watch_total",
    "counter",
    "exporter",
    ("resource", "result"),
    "Watch requests of the resource per result: success (the API server accepted it), error, "
    "forbidden, not_found, gone (410: the resourceVersion is too old and a relist follows).",
)
EXPORTER_MALFORMED: Final = Family(
    "kubevirt_update_exporter_malformed_objects_total",
    "counter",
    "exporter",
    ("resource",),
    "Objects of the resource that could not be read (a field of an unexpected type or shape). "
    "Each is logged with the object and the field; the previously known state of that object "
    "is kept.",
)
EXPORTER_VERDICT_DISAGREEMENTS: Final = Family(
    "kubevirt_update_exporter_verdict_disagreements",
    "gauge",
    "exporter",
    (),
    "Number of VMIs on which virt-controller's kubevirt.io/outdatedLauncherImage label and the "
    "exporter's cross-check against the launcher image rebuilt from the KubeVirt CR disagree "
    "now. The label wins; a lasting non-zero value means the cross-check is wrong for this "
    "install (e.g. a mirrored registry).",
)
EXPORTER_LAST_EVENT: Final = Family(
    "kubevirt_update_exporter_last_event_timestamp_seconds",
    "gauge",
    "exporter",
    ("resource",),
    "Unix time of the last watch event (including bookmarks) received for the resource; 0 "
    "until the first one.",
)
EXPORTER_RENDER_DURATION: Final = Family(
    "kubevirt_update_exporter_render_duration_seconds",
    "gauge",
    "exporter",
    (),
    "Seconds the last assembly of the /metrics body from the pre-rendered per-VMI lines took "
    "(it happens on the first scrape after a change; unchanged scrapes reuse the body).",
)
EXPORTER_EVENT_LOOP_LAG: Final = Family(
    "kubevirt_update_exporter_event_loop_lag_seconds",
    "gauge",
    "exporter",
    (),
    "Worst event loop lag (how late a periodic probe ran) measured since the previous scrape. "
    "High values mean the exporter is CPU-starved or a long step blocks the loop.",
)
EXPORTER_ABORTED_SCRAPES: Final = Family(
    "kubevirt_update_exporter_aborted_scrapes_total",
    "counter",
    "exporter",
    (),
    "Scrapes of /metrics whose client went away before the whole body was written (a "
    "Prometheus scrape_timeout shorter than the scrape does this). Logged at debug level only; "
    "a steady rate means the scrape timeout is too short for the body.",
)
EXPORTER_REFUSED_CONNECTIONS: Final = Family(
    "kubevirt_update_exporter_refused_connections_total",
    "counter",
    "exporter",
    (),
    "Connections refused (503) or evicted because the exporter already held its connection "
    "limit (1024, or the file limit minus 256 when lower). Rising means something opens many "
    "connections and holds them.",
)

#: Every family, in exposition order.
FAMILIES: Final[tuple[Family, ...]] = (
    VMI_INFO,
    VMI_OUTDATED,
    VMI_LIVE_MIGRATABLE,
    VMI_OUTDATED_REASON,
    VMI_NOT_LIVE_MIGRATABLE,
    VMI_UPDATE_STATE,
    VMI_OUTDATED_SINCE,
    VMI_UPDATE_MIGRATION_FAILURES,
    OUTDATED_VMIS,
    VMIS,
    NOT_LIVE_MIGRATABLE_VMIS,
    VMIS_BY_LAUNCHER_IMAGE,
    KUBEVIRT_INFO,
    KUBEVIRT_CONVERGED,
    KUBEVIRT_METHOD_ENABLED,
    KUBEVIRT_BATCH_EVICTION_SIZE,
    KUBEVIRT_BATCH_EVICTION_INTERVAL,
    KUBEVIRT_REPORTED_OUTDATED,
    KUBEVIRT_CRS,
    EXPORTER_BUILD_INFO,
    EXPORTER_SYNCED,
    EXPORTER_OBJECTS,
    EXPORTER_WATCH_EVENTS,
    EXPORTER_LIST,
    EXPORTER_WATCH,
    EXPORTER_MALFORMED,
    EXPORTER_VERDICT_DISAGREEMENTS,
    EXPORTER_LAST_EVENT,
    EXPORTER_RENDER_DURATION,
    EXPORTER_EVENT_LOOP_LAG,
    EXPORTER_ABORTED_SCRAPES,
    EXPORTER_REFUSED_CONNECTIONS,
)

FAMILY_NAMES: Final[frozenset[str]] = frozenset(f.name for f in FAMILIES)


@dataclass(frozen=True, slots=True)
class MetricFilter:
    """Which filterable families are served (`--metric-allowlist` / `--metric-denylist`).

    With an allowlist only families whose whole name matches one of its patterns are served;
    with a denylist every family except those; with neither, everything. Families that are not
    `filterable` are served regardless.
    """

    allow: tuple[re.Pattern[str], ...] = ()
    deny: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def parse(cls, allowlist: str = "", denylist: str = "") -> MetricFilter:
        """Build from the flags' comma-separated texts; see `of` for the errors."""
        return cls.of(allow=allowlist.split(","), deny=denylist.split(","))

    @classmethod
    def of(cls, *, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> MetricFilter:
        """Build from patterns (blank ones are ignored).

        Raises ValueError naming the flag and the pattern when a pattern is not a regular
        expression, or when both lists are given.
        """
        allowed = _patterns("--metric-allowlist", allow)
        denied = _patterns("--metric-denylist", deny)
        if allowed and denied:
            raise ValueError(
                "--metric-allowlist and --metric-denylist are mutually exclusive; set only one"
            )
        return cls(allow=allowed, deny=denied)

    def admits(self, family: Family) -> bool:
        """The family is served."""
        if not family.filterable:
            return True
        if self.allow:
            return _matches(self.allow, family.name)
        return not _matches(self.deny, family.name)

    def served(self, families: Iterable[Family] = FAMILIES) -> tuple[Family, ...]:
        """The admitted families, in table order."""
        return tuple(f for f in families if self.admits(f))


SERVE_ALL: Final = MetricFilter()


def _patterns(flag: str, texts: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    patterns = []
    for text in texts:
        item = text.strip()
        if not item:
            continue
        try:
            patterns.append(re.compile(item))
        except re.error as error:
            raise ValueError(f"{flag}: {item!r} is not a regular expression: {error}") from None
    return tuple(patterns)


def _matches(patterns: tuple[re.Pattern[str], ...], name: str) -> bool:
    return any(p.fullmatch(name) for p in patterns)

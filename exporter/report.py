"""`report`: the runbook's Diagnosis in one command — which VMIs are outdated, why, and who acts.

Contract:
- `build_report(views, cp, kubevirts=..., selection=..., preflight=..., now=...)` is pure: it turns
  views and the control plane into a `ReportDoc`, the documented machine-readable schema
  (`apiVersion: kubevirt-update-exporter/v1`, `kind: UpdateReport`; docs/cli.md). Without
  `preflight` the rows are the outdated VMIs; with it, every Running VMI with what automation would
  do if the control plane were upgraded now (a view's method/action are computed as if outdated).
- `render_table` fits the default width (100 columns): long cells are shortened with "~", the full
  values are in `-o json|yaml`. `render_json`/`render_yaml` serialize the document unchanged.
- `exit_code(doc)`: 0 when no row needs a human, 1 when a row's action is migrate/restart/manual.
  Usage errors are 2 and unreadable sources 3 (`run`).
- `explain(view, cp)` says in one sentence why automation does (or does not) move a VMI; the
  upstream behaviour behind each branch is cited where SPEC section 2 defines it.
- Advice never suggests `virtctl stop` (it sets runStrategy Halted, kubevirt/kubevirt:
  pkg/virt-api/rest/lifecycle.go), and on HCO-managed clusters points at the HyperConverged CR,
  whose operator reverts edits of the KubeVirt CR.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import textwrap
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO, TypedDict

import yaml

from exporter.model import (
    ACTIONS,
    CONDITION_MISSING,
    METHODS,
    Action,
    ControlPlane,
    KubeVirt,
    Method,
    VmiView,
)
from exporter.sources import add_source_arguments, read_fleet

#: Version of the machine-readable report; bumped on any incompatible change of its fields.
API_VERSION: Final = "kubevirt-update-exporter/v1"
KIND: Final = "UpdateReport"
#: Actions that need a human (exit code 1).
HUMAN_ACTIONS: Final[frozenset[Action]] = frozenset({"migrate", "restart", "manual"})
#: Methods under which nothing will ever move the VMI.
STUCK_METHODS: Final[frozenset[Method]] = frozenset({"none", "evict_stops"})
#: Run strategies `virtctl restart` accepts (kubevirt/kubevirt: pkg/virt-api/rest/lifecycle.go,
#: RestartVMRequestHandler refuses Halted and Once).
RESTARTABLE_RUN_STRATEGIES: Final = frozenset({"Always", "RerunOnFailure", "Manual"})

EXIT_OK: Final = 0
EXIT_NEEDS_ACTION: Final = 1

DEFAULT_WIDTH: Final = 100
OUTPUTS: Final = ("table", "json", "yaml")


class CrRef(TypedDict):
    namespace: str
    name: str


class ControlPlaneDoc(TypedDict):
    kubevirtCRs: int
    kubevirts: list[CrRef]
    observedVersion: str | None
    targetVersion: str | None
    phase: str | None
    converged: bool
    updateMethods: list[str]
    batchEvictionSize: int | None
    batchEvictionIntervalSeconds: float | None
    evictionStrategy: str | None
    parallelMigrationsPerCluster: int | None
    targetLauncherImage: str | None
    hcoManaged: bool


class SelectionDoc(TypedDict):
    namespaces: list[str]
    actions: list[str]
    methods: list[str]


class SummaryDoc(TypedDict):
    vmis: int
    needsAction: int
    byMethod: dict[str, int]
    byAction: dict[str, int]


class VmiRow(TypedDict):
    namespace: str
    name: str
    node: str
    phase: str
    outdated: bool
    reason: str | None
    liveMigratable: bool
    notLiveMigratableReason: str | None
    method: str
    action: str
    vm: str | None
    runStrategy: str | None
    evictionStrategy: str
    launcherImage: str
    outdatedSince: str | None
    updateMigrationFailures: int
    why: str


class ReportDoc(TypedDict):
    apiVersion: str
    kind: str
    generatedAt: str
    preflight: bool
    selection: SelectionDoc
    controlPlane: ControlPlaneDoc
    summary: SummaryDoc
    advice: list[str]
    vmis: list[VmiRow]


@dataclass(frozen=True)
class Selection:
    """Row filters of `report`/`plan`; an empty set admits everything."""

    namespaces: frozenset[str] = field(default_factory=frozenset)
    actions: frozenset[Action] = field(default_factory=frozenset)
    methods: frozenset[Method] = field(default_factory=frozenset)

    def admits(self, view: VmiView) -> bool:
        """The view passes every non-empty filter."""
        return (
            (not self.namespaces or view.namespace in self.namespaces)
            and (not self.actions or view.action in self.actions)
            and (not self.methods or view.method in self.methods)
        )


#: The selection that admits every VMI.
EVERYTHING: Final = Selection()


# -- the document ---------------------------------------------------------------------------


def build_report(
    views: Iterable[VmiView],
    cp: ControlPlane,
    *,
    kubevirts: Sequence[KubeVirt] = (),
    selection: Selection = EVERYTHING,
    preflight: bool = False,
    now: float,
) -> ReportDoc:
    """The report document: rows sorted by namespace/name, summary and advice over those rows."""
    rows = sorted(
        (v for v in views if _in_report(v, preflight=preflight) and selection.admits(v)),
        key=lambda v: (v.namespace, v.name),
    )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "generatedAt": rfc3339(now),
        "preflight": preflight,
        "selection": {
            "namespaces": sorted(selection.namespaces),
            "actions": sorted(selection.actions),
            "methods": sorted(selection.methods),
        },
        "controlPlane": control_plane_doc(cp, kubevirts),
        "summary": summarize(rows),
        "advice": advise(rows, cp, kubevirts=kubevirts, preflight=preflight),
        "vmis": [vmi_row(v, cp) for v in rows],
    }


def _in_report(view: VmiView, *, preflight: bool) -> bool:
    return view.phase == "Running" if preflight else view.outdated


def control_plane_doc(cp: ControlPlane, kubevirts: Sequence[KubeVirt]) -> ControlPlaneDoc:
    """The header facts; per-CR fields are null unless exactly one KubeVirt CR exists."""
    kv = cp.kubevirt
    refs: list[CrRef] = [{"namespace": k.namespace, "name": k.name} for k in kubevirts]
    if kv is not None and not refs:
        refs = [{"namespace": kv.namespace, "name": kv.name}]
    return {
        "kubevirtCRs": cp.crs,
        "kubevirts": sorted(refs, key=lambda r: (r["namespace"], r["name"])),
        "observedVersion": kv.observed_version if kv else None,
        "targetVersion": kv.target_version if kv else None,
        "phase": kv.phase if kv else None,
        "converged": cp.converged,
        "updateMethods": list(kv.update_methods) if kv else [],
        "batchEvictionSize": kv.batch_eviction_size if kv else None,
        "batchEvictionIntervalSeconds": kv.batch_eviction_interval_seconds if kv else None,
        "evictionStrategy": cp.eviction_strategy,
        "parallelMigrationsPerCluster": kv.parallel_migrations_per_cluster if kv else None,
        "targetLauncherImage": cp.target_launcher_image or None,
        "hcoManaged": cp.hco_managed,
    }


def summarize(rows: Sequence[VmiView]) -> SummaryDoc:
    """Counts over the rows; every method and action is a key, zero included."""
    return {
        "vmis": len(rows),
        "needsAction": sum(1 for v in rows if v.action in HUMAN_ACTIONS),
        "byMethod": {m: sum(1 for v in rows if v.method == m) for m in METHODS},
        "byAction": {a: sum(1 for v in rows if v.action == a) for a in ACTIONS},
    }


def vmi_row(view: VmiView, cp: ControlPlane) -> VmiRow:
    """One VMI as the schema spells it (the VM of a VM-owned VMI has the VMI's name)."""
    owned = view.owner_kind == "VirtualMachine"
    return {
        "namespace": view.namespace,
        "name": view.name,
        "node": view.node,
        "phase": view.phase,
        "outdated": view.outdated,
        "reason": view.outdated_reason,
        "liveMigratable": view.live_migratable,
        "notLiveMigratableReason": view.not_migratable_reason,
        "method": view.method,
        "action": view.action,
        "vm": view.name if owned else None,
        "runStrategy": view.run_strategy if owned else None,
        "evictionStrategy": view.eviction_strategy,
        "launcherImage": view.launcher_image,
        "outdatedSince": rfc3339(view.outdated_since) if view.outdated_since is not None else None,
        "updateMigrationFailures": view.update_migration_failures,
        "why": explain(view, cp),
    }


def exit_code(doc: ReportDoc) -> int:
    """0 when nothing in the report needs a human, 1 when some row's action is not `wait`."""
    return EXIT_NEEDS_ACTION if doc["summary"]["needsAction"] else EXIT_OK


# -- explanations and advice ----------------------------------------------------------------


def explain(view: VmiView, cp: ControlPlane) -> str:
    """Why automation does what `view.method` says, and what `view.action` asks of a human."""
    why = _why_method(view, cp)
    if view.action == "wait":
        return why
    return f"{why}; {_why_action(view)}"


def _migratable_text(view: VmiView) -> str:
    if view.live_migratable:
        return "live-migratable"
    return f"not live-migratable: {view.not_migratable_reason or CONDITION_MISSING}"


def _run_strategy_text(view: VmiView) -> str:
    if view.owner_kind != "VirtualMachine":
        return "a standalone VMI is not recreated: it is gone"
    return f"runStrategy {view.run_strategy} does not start a new VMI: the VM stays down"


def _why_method(view: VmiView, cp: ControlPlane) -> str:
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
        "maintenance window"
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
) -> list[str]:
    """The next steps, most important first; each a full sentence."""
    advice = _control_plane_advice(cp, kubevirts)
    counts = summarize(rows)["byAction"]
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
    advice.extend(_preflight_steps(counts) if preflight else _steps(counts, len(rows)))
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
            f"Handle {vmis(counts['manual'], 'outdated')} by hand; each row's `why` says how."
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
            "them from migrating (see `why`) or plan a maintenance window."
        )
    if counts["manual"]:
        steps.append(
            f"After an upgrade, {vmis(counts['manual'])} would need manual handling (see `why`)."
        )
    if counts["wait"] and not (counts["migrate"] or counts["restart"] or counts["manual"]):
        steps.append("Automation would update every Running VMI listed after an upgrade.")
    return steps


def _control_plane_advice(cp: ControlPlane, kubevirts: Sequence[KubeVirt]) -> list[str]:
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


# -- rendering ------------------------------------------------------------------------------


def render_json(doc: ReportDoc) -> str:
    """The document as indented JSON (keys in schema order)."""
    return json.dumps(doc, indent=2) + "\n"


def render_yaml(doc: ReportDoc) -> str:
    """The document as YAML (keys in schema order)."""
    return yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False, width=1000)


def render_table(doc: ReportDoc, *, now: float, width: int = DEFAULT_WIDTH) -> str:
    """Header, one aligned row per VMI fitting `width` columns, then the advice."""
    lines = _header_lines(doc)
    lines.append("")
    if doc["vmis"]:
        headers, cells = (
            _preflight_cells(doc["vmis"]) if doc["preflight"] else _report_cells(doc["vmis"], now)
        )
        lines.extend(format_table(headers, cells, width=width))
    else:
        what = "Running VMIs" if doc["preflight"] else "outdated VMIs"
        lines.append(f"No {what}{' match the filters' if _filtered(doc) else ''}.")
    if doc["preflight"]:
        lines.extend(_stuck_lines(doc["vmis"], width))
    if doc["advice"]:
        lines.append("")
        lines.append("Advice:")
        for item in doc["advice"]:
            lines.extend(_wrap(item, width))
    return "\n".join(lines) + "\n"


def _filtered(doc: ReportDoc) -> bool:
    chosen = doc["selection"]
    return bool(chosen["namespaces"] or chosen["actions"] or chosen["methods"])


def _header_lines(doc: ReportDoc) -> list[str]:
    cp = doc["controlPlane"]
    summary = doc["summary"]
    refs = ", ".join(f"{r['namespace']}/{r['name']}" for r in cp["kubevirts"])
    if cp["kubevirtCRs"] != 1:
        listed = f" ({refs})" if refs else ""
        kubevirt = f"{cp['kubevirtCRs']} KubeVirt CRs{listed}: upstream will not update anything"
        update = "methods: none (no single KubeVirt CR)"
    else:
        observed = cp["observedVersion"] or "unknown"
        target = cp["targetVersion"] or "unknown"
        state = (
            "converged" if cp["converged"] else f"NOT converged (phase {cp['phase'] or 'unknown'})"
        )
        hco = ", managed by HCO" if cp["hcoManaged"] else ""
        kubevirt = f"{refs}{hco}: observed {observed}, target {target}, {state}"
        methods = ", ".join(cp["updateMethods"]) or "none (no automatic updates)"
        update = (
            f"methods: {methods}; batch eviction {cp['batchEvictionSize']} every "
            f"{go_duration(cp['batchEvictionIntervalSeconds'] or 0.0)}"
        )
    what = "Running VMIs (preflight)" if doc["preflight"] else "Outdated VMIs"
    return [
        f"KubeVirt:  {kubevirt}",
        f"Updates:   {update}",
        f"{what}: {summary['vmis']}, {summary['needsAction']} need a human",
        f"  by method: {_counts(summary['byMethod'])}",
        f"  by action: {_counts(summary['byAction'])}",
    ]


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{k} {n}" for k, n in counts.items() if n]
    return ", ".join(shown) or "-"


def _report_cells(rows: Sequence[VmiRow], now: float) -> tuple[list[str], list[list[str]]]:
    headers = [
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
    cells = [
        [
            r["namespace"],
            r["name"],
            r["node"] or "-",
            _reason_cell(r),
            _migratable_cell(r),
            r["method"],
            r["action"],
            _run_strategy_cell(r),
            _age(r["outdatedSince"], now),
        ]
        for r in rows
    ]
    return headers, cells


def _preflight_cells(rows: Sequence[VmiRow]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "NAMESPACE",
        "NAME",
        "NODE",
        "MIGRATABLE",
        "EVICTION",
        "RUN",
        "METHOD",
        "ACTION",
    ]
    cells = [
        [
            r["namespace"],
            r["name"],
            r["node"] or "-",
            _migratable_cell(r),
            r["evictionStrategy"],
            _run_strategy_cell(r),
            r["method"],
            r["action"],
        ]
        for r in rows
    ]
    return headers, cells


def _stuck_lines(rows: Sequence[VmiRow], width: int) -> list[str]:
    stuck = [r for r in rows if r["method"] in STUCK_METHODS]
    if not stuck:
        return []
    lines = ["", f"Nothing would move {vmis(len(stuck))} after an upgrade:"]
    for r in stuck:
        lines.extend(_wrap(f"{r['namespace']}/{r['name']}: {r['why']}", width))
    return lines


def _run_strategy_cell(row: VmiRow) -> str:
    return row["runStrategy"] or "-" if row["vm"] is not None else "-"


#: The table's short spelling of each outdated reason (the JSON/YAML and metrics spell them out).
SHORT_REASONS: Final[Mapping[str, str]] = {
    "launcher_image": "image",
    "hotplug_cpu": "cpu",
    "hotplug_memory": "memory",
    "migration_required": "migration",
    "volumes_change": "volumes",
}


def _reason_cell(row: VmiRow) -> str:
    reason = row["reason"]
    return SHORT_REASONS.get(reason, reason) if reason else "-"


def _wrap(text: str, width: int) -> list[str]:
    """A bullet wrapped to `width`, never breaking inside a name or command at a hyphen."""
    return textwrap.wrap(
        text, width, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False
    )


def _migratable_cell(row: VmiRow) -> str:
    if row["liveMigratable"]:
        return "yes"
    reason = row["notLiveMigratableReason"] or CONDITION_MISSING
    if reason == CONDITION_MISSING:
        return "unknown"
    for suffix in ("NotLiveMigratable", "LiveMigratable"):
        if reason.endswith(suffix) and reason != suffix:
            reason = reason.removesuffix(suffix)
            break
    return f"no:{reason}"


#: How a table too wide for its width gives way, step by step until it fits: first the cells
#: that abbreviate well are shortened to a floor (the first group); if that is not enough, the
#: gap between columns narrows from two spaces to one (and the first group is shortened only as
#: far as still needed); then names are shortened to a floor (the second group), and last the
#: widest shrinkable column loses a character at a time, never below its header. Names
#: are cut in the middle (their ends tell replicas apart), other cells at the end; "~" marks a cut.
_FIRST_FLOORS: Final[tuple[tuple[str, int], ...]] = (
    ("MIGRATABLE", 10),
    ("RUN", 10),
    ("NODE", 10),
    ("EVICTION", 11),
)
_NAME_FLOORS: Final[tuple[tuple[str, int], ...]] = (("NAMESPACE", 12), ("NAME", 18))
_SHRINKABLE: Final = frozenset(h for h, _ in (*_FIRST_FLOORS, *_NAME_FLOORS))
_CUT_IN_THE_MIDDLE: Final = frozenset({"NAMESPACE", "NAME", "NODE"})


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int) -> list[str]:
    """Left-aligned columns, shortened as `_FIRST_FLOORS` describes to fit `width`.

    A column never gets narrower than its header; when even that does not fit, lines stay long.
    """
    natural = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    for gap in (2, 1):
        widths = list(natural)
        _shrink_to_floors(headers, widths, _FIRST_FLOORS, _excess(widths, gap, width))
        if _excess(widths, gap, width) <= 0:
            break
    _shrink_to_floors(headers, widths, _NAME_FLOORS, _excess(widths, gap, width))
    shrinkable = [i for i, h in enumerate(headers) if h in _SHRINKABLE]
    while _excess(widths, gap, width) > 0:
        candidates = [i for i in shrinkable if widths[i] > len(headers[i])]
        if not candidates:
            break
        widths[max(candidates, key=lambda i: widths[i])] -= 1
    middle = [h in _CUT_IN_THE_MIDDLE for h in headers]
    return [
        _format_row(headers, widths, [False] * len(headers), gap),
        *(_format_row(row, widths, middle, gap) for row in rows),
    ]


def _excess(widths: Sequence[int], gap: int, width: int) -> int:
    return sum(widths) + gap * (len(widths) - 1) - width


def _shrink_to_floors(
    headers: Sequence[str], widths: list[int], floors: Sequence[tuple[str, int]], excess: int
) -> None:
    """Narrow the named columns in order, each down to its floor, until `excess` is gone."""
    for header, floor in floors:
        if excess <= 0 or header not in headers:
            continue
        i = headers.index(header)
        cut = min(excess, max(0, widths[i] - max(floor, len(header))))
        widths[i] -= cut
        excess -= cut


def _format_row(
    cells: Sequence[str], widths: Sequence[int], middle: Sequence[bool], gap: int
) -> str:
    fitted = [
        _fit(cell, w, middle=m).ljust(w) for cell, w, m in zip(cells, widths, middle, strict=True)
    ]
    return (" " * gap).join(fitted).rstrip()


def _fit(text: str, width: int, *, middle: bool) -> str:
    """`text` in `width` characters: cut at the end, or in the middle, marked with "~"."""
    if len(text) <= width:
        return text
    if not middle or width < 5:
        return text[: width - 1] + "~"
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "~" + text[len(text) - tail :]


def _age(timestamp: str | None, now: float) -> str:
    if timestamp is None:
        return "-"
    since = datetime.datetime.fromisoformat(timestamp).timestamp()
    return short_age(max(0.0, now - since))


def short_age(seconds: float) -> str:
    """kubectl-style age: 45s, 12m, 5h3m, 3d4h, 400d."""
    s = int(seconds)
    days, rem = divmod(s, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days >= 10:
        return f"{days}d"
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def go_duration(seconds: float) -> str:
    """Seconds as Go's time.Duration prints them (`1m0s`), the spelling of the KubeVirt CR."""
    total = round(seconds)
    hours, rem = divmod(total, 3600)
    minutes, secs = divmod(rem, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def rfc3339(timestamp: float) -> str:
    """Unix seconds as RFC 3339 UTC with a Z, as the API server writes timestamps."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# -- command line ---------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `report` subcommand (its flags; `run` executes it)."""
    parser = subparsers.add_parser(
        "report",
        help="list outdated VMIs: why, what automation will do, what you should do",
        description="The OutdatedVirtualMachineInstanceWorkloads runbook's Diagnosis in one "
        "command. Exit code: 0 nothing needs a human, 1 some VMI needs action "
        "(migrate/restart/manual), 2 usage or settings error, 3 cluster/snapshot unreadable.",
    )
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="table", help="default: table")
    parser.add_argument(
        "--preflight",
        action="store_true",
        help="every Running VMI: what automation would do if the control plane were upgraded now",
    )
    parser.add_argument(
        "--action", choices=ACTIONS, action="append", help="only rows with this action (repeatable)"
    )
    parser.add_argument(
        "--method", choices=METHODS, action="append", help="only rows with this method (repeatable)"
    )
    add_source_arguments(parser)
    parser.set_defaults(run=run)


def run(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    now: float | None = None,
) -> int:
    """Execute `report` for parsed `args`; returns the documented exit code."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    fleet = read_fleet(args, environ=os.environ if environ is None else environ, stderr=err)
    if isinstance(fleet, int):
        return fleet
    moment = time.time() if now is None else now
    doc = build_report(
        fleet.views,
        fleet.control_plane,
        kubevirts=fleet.kubevirts,
        selection=Selection(
            namespaces=frozenset(args.namespace or ()),
            actions=frozenset(args.action or ()),
            methods=frozenset(args.method or ()),
        ),
        preflight=args.preflight,
        now=moment,
    )
    if args.output == "json":
        out.write(render_json(doc))
    elif args.output == "yaml":
        out.write(render_yaml(doc))
    else:
        out.write(render_table(doc, now=moment))
    return exit_code(doc)

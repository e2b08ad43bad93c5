"""`report`: the runbook's Diagnosis in one command — which VMIs are outdated, why, and who acts.

Contract:
- `build_report(views, cp, kubevirts=..., selection=..., preflight=..., now=...)` is pure: it turns
  views and the control plane into a `ReportDoc`, the documented machine-readable schema
  (`apiVersion: kubevirt-update-exporter/v1`, `kind: UpdateReport`; docs/cli.md). Without
  `preflight` the rows are the outdated VMIs; with it, every Running VMI with what automation would
  do if the control plane were upgraded now (a view's method/action are computed as if outdated).
- `render_table(doc, width=...)` fits the given width (the terminal's, from the command) without
  ever cutting a cell: it leaves out whole columns, least needed first, and says which; `wide`
  adds the WHY column and leaves nothing out. `render_json`/`render_yaml` serialize the document
  unchanged.
- `exit_code(doc)`: 0 when no row needs a human, 1 when a row's action is migrate/restart/manual.
  Usage errors are 2 and unreadable sources 3 (the command, `exporter.cli.report`).
- Pure: no IO, no clock. Each row's `why` and the advice are `exporter.advice`'s words; the table
  layout is `exporter.table`'s.

Longer than most modules: the document schema and the three renderings (table, JSON, YAML)
change together; splitting them would spread one schema over several files.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypedDict

import yaml

from exporter.advice import (
    CLUSTER,
    EXIT_NEEDS_ACTION,
    EXIT_OK,
    HUMAN_ACTIONS,
    STUCK_METHODS,
    Source,
    advise,
    count_by_action,
    explain,
    vmis,
)
from exporter.model import (
    CONDITION_MISSING,
    KINDS,
    METHODS,
    RESOURCES,
    ControlPlane,
    KubeVirt,
    VmiView,
)
from exporter.selection import EVERYTHING, Selection
from exporter.table import age, bullet, format_table, go_duration, rfc3339

#: Version of the machine-readable report; bumped on any incompatible change of its fields.
API_VERSION: Final = "kubevirt-update-exporter/v1"
KIND: Final = "UpdateReport"
#: Where prose (header notes, advice) wraps when the table has no width limit.
DEFAULT_WIDTH: Final = 100
OUTPUTS: Final = ("table", "wide", "json", "yaml")
#: The report table's columns, least needed first: left out in this order to fit the width.
#: NAMESPACE, NAME and ACTION always stay (what to act on, and what to do).
REPORT_HIDE_FIRST: Final = ("SINCE", "NODE", "RUN", "MIGRATABLE", "REASON", "METHOD")
PREFLIGHT_HIDE_FIRST: Final = ("NODE", "EVICTION", "RUN", "MIGRATABLE", "METHOD")


class CrRef(TypedDict):
    namespace: str
    name: str


class SourceDoc(TypedDict):
    snapshot: str | None
    missingKinds: list[str]
    skipped: dict[str, int]


class ControlPlaneDoc(TypedDict):
    kubevirtCRs: int | None
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
    source: SourceDoc
    controlPlane: ControlPlaneDoc
    summary: SummaryDoc
    advice: list[str]
    vmis: list[VmiRow]


# -- the document ---------------------------------------------------------------------------


def build_report(
    views: Iterable[VmiView],
    cp: ControlPlane,
    *,
    kubevirts: Sequence[KubeVirt] = (),
    selection: Selection = EVERYTHING,
    preflight: bool = False,
    source: Source = CLUSTER,
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
        "source": {
            "snapshot": source.snapshot,
            "missingKinds": [KINDS[r] for r in RESOURCES if r in source.missing],
            "skipped": dict(sorted(source.skipped.items())),
        },
        "controlPlane": control_plane_doc(cp, kubevirts, policy_known=source.policy_known),
        "summary": summarize(rows),
        "advice": advise(rows, cp, kubevirts=kubevirts, preflight=preflight, source=source),
        "vmis": [vmi_row(v, cp, source=source) for v in rows],
    }


def _in_report(view: VmiView, *, preflight: bool) -> bool:
    return view.phase == "Running" if preflight else view.outdated


def control_plane_doc(
    cp: ControlPlane, kubevirts: Sequence[KubeVirt], *, policy_known: bool = True
) -> ControlPlaneDoc:
    """The header facts; per-CR fields are null unless exactly one KubeVirt CR exists, and the
    CR count is null when the source did not capture KubeVirt CRs."""
    kv = cp.kubevirt
    refs: list[CrRef] = [{"namespace": k.namespace, "name": k.name} for k in kubevirts]
    if kv is not None and not refs:
        refs = [{"namespace": kv.namespace, "name": kv.name}]
    return {
        "kubevirtCRs": cp.crs if policy_known else None,
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
        "byAction": count_by_action(rows),
    }


def vmi_row(view: VmiView, cp: ControlPlane, *, source: Source = CLUSTER) -> VmiRow:
    """One VMI as the schema spells it (the VM of a VM-owned VMI has the VMI's name; its run
    strategy is null when that VM was not read)."""
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
        "runStrategy": (view.run_strategy or None) if owned else None,
        "evictionStrategy": view.eviction_strategy,
        "launcherImage": view.launcher_image,
        "outdatedSince": rfc3339(view.outdated_since) if view.outdated_since is not None else None,
        "updateMigrationFailures": view.update_migration_failures,
        "why": explain(view, cp, source=source),
    }


def exit_code(doc: ReportDoc) -> int:
    """0 when nothing in the report needs a human, 1 when some row's action is not `wait`."""
    return EXIT_NEEDS_ACTION if doc["summary"]["needsAction"] else EXIT_OK


# -- rendering ------------------------------------------------------------------------------


def render_json(doc: ReportDoc) -> str:
    """The document as indented JSON (keys in schema order)."""
    return json.dumps(doc, indent=2) + "\n"


def render_yaml(doc: ReportDoc) -> str:
    """The document as YAML (keys in schema order)."""
    return yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False, width=1000)


def render_table(
    doc: ReportDoc, *, now: float, width: int | None = DEFAULT_WIDTH, wide: bool = False
) -> str:
    """Header, one aligned row per VMI fitting `width` columns (None: no limit), then the
    advice. `wide` adds each row's WHY and leaves no column out."""
    lines = _header_lines(doc)
    lines.append("")
    prose = width or DEFAULT_WIDTH
    if doc["vmis"]:
        headers, cells = (
            _preflight_cells(doc["vmis"]) if doc["preflight"] else _report_cells(doc["vmis"], now)
        )
        if wide:
            headers.append("WHY")
            for cell, row in zip(cells, doc["vmis"], strict=True):
                cell.append(row["why"])
        hide_first = PREFLIGHT_HIDE_FIRST if doc["preflight"] else REPORT_HIDE_FIRST
        table = format_table(headers, cells, width=None if wide else width, hide_first=hide_first)
        lines.extend(table.lines)
        if table.hidden:
            lines.extend(
                textwrap.wrap(
                    f"({', '.join(table.hidden)} left out to fit {width} columns; "
                    "`-o wide` shows every column and each row's why)",
                    prose,
                )
            )
    else:
        what = "Running VMIs" if doc["preflight"] else "outdated VMIs"
        lines.append(f"No {what}{' match the filters' if _filtered(doc) else ''}.")
    if doc["preflight"]:
        lines.extend(_stuck_lines(doc["vmis"], prose))
    if doc["advice"]:
        lines.append("")
        lines.append("Advice:")
        for item in doc["advice"]:
            lines.extend(bullet(item, prose))
    return "\n".join(lines) + "\n"


def _filtered(doc: ReportDoc) -> bool:
    chosen = doc["selection"]
    return bool(chosen["namespaces"] or chosen["actions"] or chosen["methods"])


def _header_lines(doc: ReportDoc) -> list[str]:
    cp = doc["controlPlane"]
    summary = doc["summary"]
    source = doc["source"]
    lines = []
    if source["snapshot"] is not None:
        missing = source["missingKinds"]
        lacks = f"; not in it: {', '.join(missing)} (see the warnings)" if missing else ""
        lines.append(f"Snapshot:  {source['snapshot']}{lacks}")
    refs = ", ".join(f"{r['namespace']}/{r['name']}" for r in cp["kubevirts"])
    if cp["kubevirtCRs"] is None:
        kubevirt = "not in the snapshot: the update policy is unknown"
        update = "methods: unknown (shown as if none were enabled)"
    elif cp["kubevirtCRs"] != 1:
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
        *lines,
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
            age(r["outdatedSince"], now),
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
        lines.extend(bullet(f"{r['namespace']}/{r['name']}: {r['why']}", width))
    return lines


def _run_strategy_cell(row: VmiRow) -> str:
    """The VM's run strategy; `unknown` when its VM was not read; `-` for a standalone VMI."""
    if row["vm"] is None:
        return "-"
    return row["runStrategy"] or "unknown"


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

"""Build the Grafana dashboard: dashboards/kubevirt-update-exporter.json.

Contract:
- `build()` is the dashboard model, `render()` its JSON text. The text depends only on this
  file (fixed uid, panel ids in order, no timestamps), so `--check` tells a stale copy from a
  current one and exits 1 naming the file.
- The data source is the `datasource` variable (any Prometheus); `namespace` filters the VMIs'
  namespaces. Per-VMI and aggregate selectors carry `namespace=~"$namespace"`; per-KubeVirt and
  self-metric selectors never do (their `namespace` is the CR's or the exporter's).
- Every query selects only families of the exporter's metric table (METRICS.md; checked by
  tests/deploy/test_dashboard.py).

Sections: fleet overview, VMIs needing action, control plane, failing update migrations,
exporter health. Usage: `python scripts/dashboard.py [--check]`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

REPO: Final = Path(__file__).resolve().parent.parent
OUTPUT: Final = REPO / "dashboards" / "kubevirt-update-exporter.json"
UID: Final = "kubevirt-update-exporter"
DATASOURCE: Final = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: The namespace filter of every per-VMI and aggregate selector.
NS: Final = 'namespace=~"$namespace"'

Query = prometheus.Dataquery
PanelBuilder = stat.Panel | timeseries.Panel | table.Panel


# -- building blocks ----------------------------------------------------------------------------


def query(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False) -> Query:
    """A Prometheus query on the dashboard's data source."""
    built = (
        prometheus.Dataquery()
        .expr(expr)
        .ref_id(ref)
        .datasource(DATASOURCE)
        .editor_mode(QueryEditorMode.CODE)
    )
    if legend:
        built = built.legend_format(legend)
    return built.instant().format(PromQueryFormat.TABLE) if instant else built.range()


def graph(
    title: str, description: str, *queries: Query, unit: str = "short", stacked: bool = False
) -> timeseries.Panel:
    """A time series of `queries`, optionally stacked."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(queries))
        .unit(unit)
        .min(0)
        .fill_opacity(20 if stacked else 0)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .show_legend(True)
        )
        .height(8)
        .span(12)
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def thresholds(*steps: tuple[float | None, str]) -> dashboard_builders.ThresholdsConfig:
    """Absolute thresholds: (from value, color), the first from -infinity (None)."""
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=value, color=color) for value, color in steps])
    )


def single(
    title: str,
    description: str,
    expr: str,
    *,
    legend: str = "",
    unit: str = "short",
    steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
    mappings: Sequence[tuple[str, str, str]] = (),
    span: int = 4,
) -> stat.Panel:
    """A stat of the last value of `expr`; `mappings` are (value, text, color)."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, legend))
        .unit(unit)
        .thresholds(thresholds(*steps))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .height(4)
        .span(span)
    )
    if mappings:
        panel = panel.mappings(
            [
                dashboard.ValueMap(
                    options={
                        value: dashboard.ValueMappingResult(text=text, color=color, index=i)
                        for i, (value, text, color) in enumerate(mappings)
                    }
                )
            ]
        )
    return panel


def listing(
    title: str,
    description: str,
    expr: str,
    *,
    columns: Sequence[tuple[str, str]],
    value: str = "",
    unit: str = "short",
    span: int = 24,
    height: int = 9,
) -> table.Panel:
    """A table of the series of `expr` (instant): `columns` are (label, header) in order; the
    value column is shown as `value` when given, hidden otherwise."""
    shown = [label for label, _ in columns] + (["Value"] if value else [])
    rename = dict(columns) | ({"Value": value} if value else {})
    organize = dashboard.DataTransformerConfig(
        id_val="organize",
        options={
            "indexByName": {name: i for i, name in enumerate(shown)},
            "renameByName": rename,
        },
    )
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, instant=True))
        .with_transformation(
            dashboard.DataTransformerConfig(
                id_val="filterFieldsByName",
                options={"include": {"names": shown}},
            )
        )
        .with_transformation(organize)
        .unit(unit)
        .cell_height(common.TableCellHeight.SM)
        .height(height)
        .span(span)
    )


# -- sections -----------------------------------------------------------------------------------

VMI_COLUMNS: Final = (
    ("namespace", "Namespace"),
    ("name", "VMI"),
    ("reason", "Outdated because"),
    ("method", "Automation will"),
    ("action", "You should"),
    ("node", "Node"),
    ("owner_kind", "Owner"),
    ("run_strategy", "Run strategy"),
    ("eviction_strategy", "Eviction strategy"),
)


def fleet_overview() -> Iterator[PanelBuilder]:
    """How many VMIs are outdated, why, what automation does, and how far the upgrade got."""
    outdated = f"kubevirt_update_outdated_vmis{{{NS}}}"
    yield single(
        "Outdated VMIs",
        "Running VMIs in an outdated virt-launcher pod or with a pending change (held at its "
        "last value while the control plane is not converged, like upstream's gauge).",
        f"sum({outdated}) or vector(0)",
        steps=((None, "green"), (1, "orange")),
    )
    yield single(
        "Outdated VMIs needing a human",
        "Outdated VMIs whose action is migrate, restart or manual: nothing automatic will "
        "update them (OutdatedVirtualMachineInstanceNeedsAction).",
        f'sum(kubevirt_update_outdated_vmis{{{NS}, action!="wait"}}) or vector(0)',
        steps=((None, "green"), (1, "red")),
    )
    yield single(
        "VMIs",
        "Every VMI the exporter sees, any phase.",
        f"sum(kubevirt_update_vmis{{{NS}}}) or vector(0)",
        steps=((None, "blue"),),
    )
    yield single(
        "Not live-migratable VMIs",
        "VMIs whose LiveMigratable condition is not True: LiveMigrate cannot update them.",
        f"sum(kubevirt_update_not_live_migratable_vmis{{{NS}}}) or vector(0)",
        steps=((None, "green"), (1, "yellow")),
    )
    yield single(
        "Launcher images in use",
        "Distinct virt-launcher images of Running VMIs: 1 when the upgrade is complete.",
        "count(kubevirt_update_vmis_by_launcher_image > 0) or vector(0)",
        steps=((None, "green"), (2, "orange")),
    )
    yield single(
        "Outdated VMIs with failing update migrations",
        "Outdated VMIs with failed workload-update migrations "
        "(VirtualMachineInstanceUpdateMigrationsFailing).",
        f"count((kubevirt_update_vmi_update_migration_failures{{{NS}}} > 0) and on (namespace, "
        f"name) (kubevirt_update_vmi_outdated{{{NS}}} == 1)) or vector(0)",
        steps=((None, "green"), (1, "red")),
    )
    yield graph(
        "Outdated VMIs by namespace",
        "The trend of outdated VMIs per namespace (the identity of "
        "OutdatedVirtualMachineInstanceWorkloads).",
        query(f"sum by (namespace) ({outdated})", "{{namespace}}"),
        stacked=True,
    )
    yield graph(
        "Outdated VMIs by reason",
        "Why they are outdated: launcher image, hotplug CPU/memory, migration required, volume "
        "change.",
        query(f"sum by (reason) ({outdated})", "{{reason}}"),
        stacked=True,
    )
    yield graph(
        "Outdated VMIs by method",
        "What automation will do: in_progress, live_migrate, evict (wait); evict_stops (the VM "
        "will stay down); none (nothing will).",
        query(f"sum by (method) ({outdated})", "{{method}}"),
        stacked=True,
    )
    yield graph(
        "Outdated VMIs by action",
        "What a human should do: wait, migrate, restart, manual.",
        query(f"sum by (action) ({outdated})", "{{action}}"),
        stacked=True,
    )
    yield graph(
        "Running VMIs by launcher image (upgrade progress)",
        "Running VMIs per current virt-launcher image: the old images drain as VMIs are updated.",
        query("sum by (image) (kubevirt_update_vmis_by_launcher_image)", "{{image}}"),
        stacked=True,
    )
    yield graph(
        "Not live-migratable VMIs by reason",
        "The LiveMigratable condition's reason (or ConditionMissing) of VMIs that cannot migrate.",
        query(
            f"sum by (reason) (kubevirt_update_not_live_migratable_vmis{{{NS}}})",
            "{{reason}}",
        ),
        stacked=True,
    )


def needing_action() -> Iterator[PanelBuilder]:
    """Which VMIs need a human, with everything that decides what to do."""
    yield listing(
        "Outdated VMIs needing action",
        "Outdated VMIs that nothing automatic will update, with the reason, the method and the "
        "action, their node and run/eviction strategy (`kubevirt-update-exporter report` gives "
        "the same rows; `plan` the migrations).",
        f'kubevirt_update_vmi_update_state{{{NS}, action!="wait"}}'
        f" * on (namespace, name) group_left (reason) kubevirt_update_vmi_outdated_reason{{{NS}}}"
        " * on (namespace, name) group_left (node, owner_kind, run_strategy, eviction_strategy)"
        f" kubevirt_update_vmi_info{{{NS}}}",
        columns=VMI_COLUMNS,
    )
    yield listing(
        "Outdated VMIs, longest first",
        "How long each outdated VMI has been outdated (approximate: see docs), longest first.",
        f"sort_desc(time() - kubevirt_update_vmi_outdated_since_timestamp_seconds{{{NS}}})",
        columns=(("namespace", "Namespace"), ("name", "VMI")),
        value="Outdated for",
        unit="s",
        span=12,
    )
    yield listing(
        "Outdated VMIs that cannot live-migrate",
        "Outdated VMIs whose LiveMigratable condition is not True, with its reason.",
        f"kubevirt_update_vmi_not_live_migratable{{{NS}}}"
        f" and on (namespace, name) (kubevirt_update_vmi_outdated{{{NS}}} == 1)",
        columns=(("namespace", "Namespace"), ("name", "VMI"), ("reason", "Not migratable because")),
        span=12,
    )


def control_plane() -> Iterator[PanelBuilder]:
    """The KubeVirt CR: converged or not, update methods, versions, who manages it."""
    yield single(
        "Control plane converged",
        "KubeVirt phase Deployed and observed deployment = target: only then does KubeVirt "
        "update workloads (and recount).",
        "min(kubevirt_update_kubevirt_converged)",
        steps=((None, "orange"), (1, "green")),
        mappings=(("0", "Updating", "orange"), ("1", "Converged", "green")),
    )
    yield single(
        "KubeVirt CRs",
        "KubeVirt acts only with exactly one KubeVirt CR.",
        "max(kubevirt_update_kubevirt_crs)",
        steps=((None, "red"), (1, "green"), (2, "red")),
    )
    yield single(
        "LiveMigrate enabled",
        "LiveMigrate in spec.workloadUpdateStrategy.workloadUpdateMethods.",
        'max(kubevirt_update_kubevirt_method_enabled{method="LiveMigrate"})',
        steps=((None, "orange"), (1, "green")),
        mappings=(("0", "Off", "orange"), ("1", "On", "green")),
    )
    yield single(
        "Evict enabled",
        "Evict in spec.workloadUpdateStrategy.workloadUpdateMethods.",
        'max(kubevirt_update_kubevirt_method_enabled{method="Evict"})',
        steps=((None, "blue"),),
        mappings=(("0", "Off", "blue"), ("1", "On", "blue")),
    )
    yield single(
        "Batch eviction size",
        "spec.workloadUpdateStrategy.batchEvictionSize: VMIs evicted per batch.",
        "max(kubevirt_update_kubevirt_batch_eviction_size)",
        steps=((None, "blue"),),
    )
    yield single(
        "Batch eviction interval",
        "spec.workloadUpdateStrategy.batchEvictionInterval.",
        "max(kubevirt_update_kubevirt_batch_eviction_interval_seconds)",
        unit="s",
        steps=((None, "blue"),),
    )
    yield listing(
        "KubeVirt CR",
        "Versions, the exact target launcher image when known, and whether HCO manages the CR "
        "(then edit the HyperConverged CR, not the KubeVirt CR).",
        "kubevirt_update_kubevirt_info",
        columns=(
            ("namespace", "Namespace"),
            ("name", "Name"),
            ("observed_version", "Observed version"),
            ("target_version", "Target version"),
            ("target_launcher_image", "Target launcher image"),
            ("managed_by", "Managed by"),
        ),
        span=12,
        height=6,
    )
    yield graph(
        "Outdated VMIs: exporter vs KubeVirt",
        "Our total against KubeVirt's status.outdatedVirtualMachineInstanceWorkloads "
        "(KubevirtUpdateExporterCountDrift; exported only by an unscoped exporter).",
        query("sum(kubevirt_update_outdated_vmis)", "exporter", ref="A"),
        query("sum(kubevirt_update_kubevirt_reported_outdated_vmis)", "KubeVirt", ref="B"),
    )


def failing_migrations() -> Iterator[PanelBuilder]:
    """Workload-update migrations that keep failing."""
    failing = (
        f"(kubevirt_update_vmi_update_migration_failures{{{NS}}} > 0)"
        f" and on (namespace, name) (kubevirt_update_vmi_outdated{{{NS}}} == 1)"
    )
    yield listing(
        "Outdated VMIs with failed update migrations",
        "Failed workload-update migrations per still-outdated VMI (virt-controller keeps the "
        "last 5 finished migrations of a VMI).",
        f"sort_desc({failing})",
        columns=(("namespace", "Namespace"), ("name", "VMI")),
        value="Failed update migrations",
        span=12,
        height=8,
    )
    yield graph(
        "VMIs with failing update migrations by namespace",
        "Outdated VMIs with failed workload-update migrations, per namespace.",
        query(f"count by (namespace) ({failing})", "{{namespace}}"),
        stacked=True,
    )


def exporter_health() -> Iterator[PanelBuilder]:
    """Is the exporter seeing the cluster, and is it fast?"""
    yield graph(
        "Synced",
        "1 when the kind's first list completed (KubevirtUpdateExporterNotSynced).",
        query("min by (resource) (kubevirt_update_exporter_synced)", "{{resource}}"),
    )
    yield graph(
        "Objects in cache",
        "Objects of each kind in the exporter's cache.",
        query("sum by (resource) (kubevirt_update_exporter_objects)", "{{resource}}"),
    )
    yield graph(
        "Failed list/watch calls",
        "Failed list and watch calls per second by kind and result; gone (410) is routine "
        "(KubevirtUpdateExporterListWatchErrors).",
        query(
            "sum by (resource, result) "
            '(rate(kubevirt_update_exporter_list_total{result!="success"}[$__rate_interval]))',
            "list {{resource}} {{result}}",
            ref="A",
        ),
        query(
            "sum by (resource, result) "
            '(rate(kubevirt_update_exporter_watch_total{result!="success"}[$__rate_interval]))',
            "watch {{resource}} {{result}}",
            ref="B",
        ),
        unit="reqps",
    )
    yield graph(
        "Watch events",
        "Watch events per second by kind and type.",
        query(
            "sum by (resource, type) "
            "(rate(kubevirt_update_exporter_watch_events_total[$__rate_interval]))",
            "{{resource}} {{type}}",
        ),
        unit="ops",
    )
    yield graph(
        "Event loop lag",
        "Worst event-loop lag over each scrape interval, per exporter instance.",
        query(
            "max by (instance) (kubevirt_update_exporter_event_loop_lag_seconds)", "{{instance}}"
        ),
        unit="s",
    )
    yield graph(
        "Render duration",
        "Duration of the last render of /metrics, per exporter instance.",
        query(
            "max by (instance) (kubevirt_update_exporter_render_duration_seconds)", "{{instance}}"
        ),
        unit="s",
    )
    yield graph(
        "Time since the last watch event",
        "Seconds since the last watch event of each kind (bookmarks included).",
        query(
            "time() - max by (resource) (kubevirt_update_exporter_last_event_timestamp_seconds)",
            "{{resource}}",
        ),
        unit="s",
    )
    yield graph(
        "Malformed objects and verdict disagreements",
        "Objects the exporter could not read (per hour, by kind), and VMIs where the "
        "outdatedLauncherImage label and the image cross-check disagree.",
        query(
            "sum by (resource) (increase(kubevirt_update_exporter_malformed_objects_total[1h]))",
            "malformed {{resource}}",
            ref="A",
        ),
        query("sum(kubevirt_update_exporter_verdict_disagreements)", "disagreements", ref="B"),
    )
    yield listing(
        "Exporter build",
        "Version of each running exporter.",
        "kubevirt_update_exporter_build_info",
        columns=(("instance", "Instance"), ("version", "Version"), ("python_version", "Python")),
        height=5,
    )


SECTIONS: Final = (
    ("Fleet overview", fleet_overview),
    ("VMIs needing action", needing_action),
    ("Control plane", control_plane),
    ("Failing update migrations", failing_migrations),
    ("Exporter health", exporter_health),
)


# -- the dashboard ------------------------------------------------------------------------------


def variables() -> list[cogbuilder.Builder[dashboard.VariableModel]]:
    """The data source and the namespace filter."""
    datasource = (
        dashboard_builders.DatasourceVariable("datasource").label("Data source").type("prometheus")
    )
    namespace = (
        dashboard_builders.QueryVariable("namespace")
        .label("Namespace")
        .description("Namespaces of the VMIs.")
        .datasource(DATASOURCE)
        .query("label_values(kubevirt_update_vmis, namespace)")
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dashboard.VariableOption(selected=True, text="All", value="$__all"))
    )
    return [datasource, namespace]


def build() -> dashboard.Dashboard:
    """The dashboard model."""
    board = (
        dashboard_builders.Dashboard("KubeVirt workload updates")
        .uid(UID)
        .description(
            "Which KubeVirt VMIs run in outdated virt-launcher pods, why, what will (or should) "
            "update them, and the exporter's health. Built by scripts/dashboard.py."
        )
        .tags(["kubevirt", "kubevirt-update-exporter"])
        .time("now-24h", "now")
        .refresh("1m")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .variables(variables())
    )
    ids = itertools.count(1)
    for title, section in SECTIONS:
        board = board.with_row(dashboard_builders.Row(title).id(next(ids)))
        for panel in section():
            board = board.with_panel(panel.id(next(ids)))
    return board.build()


def render() -> str:
    """The dashboard as the JSON Grafana imports."""
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with --check, verify) the dashboard JSON; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file is not current; write nothing"
    )
    args = parser.parse_args(argv)
    wanted = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else None
        if current != wanted:
            print(f"{OUTPUT.relative_to(REPO)} is stale: run scripts/dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

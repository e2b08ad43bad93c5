"""The Grafana dashboard is a fresh build of scripts/dashboard.py and queries only our metrics.

The committed JSON must equal a fresh build; every panel queries the `${datasource}` variable;
every query selects only families of the exporter's metric table (METRICS.md), with labels
those families have; VMI-level selectors follow the `namespace` variable and per-KubeVirt ones
do not (their namespace is the CR's).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from exporter.metrics import FAMILIES
from tests import REPO

SCRIPT = REPO / "scripts" / "dashboard.py"
COMMITTED = REPO / "dashboards" / "kubevirt-update-exporter.json"
FAMILY_LABELS = {f.name: set(f.labels) for f in FAMILIES}
FAMILY_GROUP = {f.name: f.group for f in FAMILIES}
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NAMESPACE_FILTER = 'namespace=~"$namespace"'
#: Panels that compare cluster-wide totals on purpose (ours against KubeVirt's own count).
CLUSTER_WIDE = {"Outdated VMIs: exporter vs KubeVirt"}

#: PromQL words that are not metric names (operators and modifiers; functions and aggregations
#: are recognised by the parenthesis that follows them).
KEYWORDS = {"and", "or", "unless", "bool", "offset", "on", "ignoring", "group_left", "group_right"}
KEYWORDS |= {"by", "without", "inf", "nan"}
SELECTOR = re.compile(r"\b([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")
CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    loaded = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows excluded)."""
    for panel in board["panels"]:
        assert not panel.get("panels"), f"row {panel['title']} must not nest panels"
        if panel["type"] != "row":
            yield panel


def targets(board: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield panel["title"], target


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions, keywords,
    label names (inside braces or grouping clauses), durations or strings."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = CLAUSE.sub(" ", text)
    names = set()
    for match in re.finditer(r"\$?[a-zA-Z_:][\w:]*", text):
        word = match.group()
        follows = text[match.end() :].lstrip()[:1]
        if word.startswith("$") or word in KEYWORDS or follows == "(":
            continue
        names.add(word)
    return names


def test_committed_dashboard_is_a_fresh_build() -> None:
    script = load_script()
    assert COMMITTED.read_text(encoding="utf-8") == script.render()
    check = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr


def test_the_check_mode_names_a_stale_dashboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script()
    stale = tmp_path / "dashboards" / "kubevirt-update-exporter.json"
    stale.parent.mkdir()
    stale.write_text(COMMITTED.read_text().replace("Outdated VMIs by reason", "Old title"))
    monkeypatch.setattr(script, "REPO", tmp_path)
    monkeypatch.setattr(script, "OUTPUT", stale)
    assert script.main(["--check"]) == 1
    assert "dashboards/kubevirt-update-exporter.json is stale" in capsys.readouterr().err
    assert script.main([]) == 0
    assert script.main(["--check"]) == 0


def test_every_panel_queries_the_datasource_variable(board: dict[str, Any]) -> None:
    shown = list(panels(board))
    assert len(shown) >= 20
    for panel in shown:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["description"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_queries_select_only_the_exporters_metric_families(board: dict[str, Any]) -> None:
    used: set[str] = set()
    for title, target in targets(board):
        names = metric_names(target["expr"])
        assert names, (title, target["expr"])
        assert names <= FAMILY_LABELS.keys(), (title, names - FAMILY_LABELS.keys())
        used |= names
    # The overview, control plane, migrations and health sections read these at least.
    for family in (
        "kubevirt_update_outdated_vmis",
        "kubevirt_update_vmis_by_launcher_image",
        "kubevirt_update_vmi_update_state",
        "kubevirt_update_kubevirt_converged",
        "kubevirt_update_kubevirt_info",
        "kubevirt_update_vmi_update_migration_failures",
        "kubevirt_update_exporter_synced",
        "kubevirt_update_exporter_event_loop_lag_seconds",
        "kubevirt_update_exporter_render_duration_seconds",
    ):
        assert family in used, family


def test_the_metric_name_reader_sees_through_functions_clauses_and_strings() -> None:
    expr = (
        'sum by (namespace) (rate(a_total{x="b_c"}[5m])) * on (name) group_left (reason) b'
        ' or vector(0) and label_replace(c, "d", "$1", "e", "(.+)")'
    )
    assert metric_names(expr) == {"a_total", "b", "c"}


def test_selectors_use_labels_their_family_has(board: dict[str, Any]) -> None:
    for title, target in targets(board):
        for name, matchers in SELECTOR.findall(target["expr"]):
            for label, _, _ in MATCHER.findall(matchers):
                assert label in FAMILY_LABELS[name] | TARGET_LABELS, (title, name, label)


def test_vmi_level_selectors_follow_the_namespace_variable_and_others_do_not(
    board: dict[str, Any],
) -> None:
    for title, target in targets(board):
        text = re.sub(r"\{[^}]*\}", "", target["expr"])
        bare = metric_names(text)
        for name in bare | {n for n, _ in SELECTOR.findall(target["expr"])}:
            selectors = [m for n, m in SELECTOR.findall(target["expr"]) if n == name]
            filtered = all(NAMESPACE_FILTER in m for m in selectors) and selectors
            vmi_level = FAMILY_GROUP[name] in {"vmi", "vmi_sparse"} or (
                FAMILY_GROUP[name] == "aggregate" and "namespace" in FAMILY_LABELS[name]
            )
            if vmi_level and title not in CLUSTER_WIDE:
                assert filtered, (title, name)
            if FAMILY_GROUP[name] in {"kubevirt", "exporter"}:
                assert not any("namespace" in m for m in selectors), (title, name)


def test_legends_and_table_columns_name_labels_the_series_have(board: dict[str, Any]) -> None:
    for panel in panels(board):
        for target in panel["targets"]:
            expr = target["expr"]
            families = metric_names(expr)
            available = set().union(*(FAMILY_LABELS[f] for f in families)) | TARGET_LABELS
            grouped = {
                label.strip() for clause in CLAUSE.findall(expr) for label in clause.split(",")
            }
            for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
                assert label in available & (grouped or available), (panel["title"], label)
        for transformation in panel.get("transformations", []):
            if transformation["id"] == "filterFieldsByName":
                expr = panel["targets"][0]["expr"]
                labels = set().union(*(FAMILY_LABELS[f] for f in metric_names(expr)))
                for column in transformation["options"]["include"]["names"]:
                    assert column in labels | TARGET_LABELS | {"Value"}, (panel["title"], column)


def test_the_layout_fits_the_grid_without_overlaps(board: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]


def test_variables_are_a_prometheus_datasource_and_the_vmis_namespaces(
    board: dict[str, Any],
) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    namespace = variables["namespace"]
    assert namespace["type"] == "query"
    assert namespace["datasource"] == DATASOURCE
    source = re.fullmatch(r"label_values\((\w+),\s*namespace\)", namespace["query"])
    assert source is not None
    assert "namespace" in FAMILY_LABELS[source.group(1)]
    assert FAMILY_GROUP[source.group(1)] == "aggregate"  # always served, whatever the denylist
    assert namespace["includeAll"] and namespace["multi"]
    assert namespace["allValue"] == ".*"


def test_sections_cover_fleet_action_control_plane_migrations_and_health(
    board: dict[str, Any],
) -> None:
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == [
        "Fleet overview",
        "VMIs needing action",
        "Control plane",
        "Failing update migrations",
        "Exporter health",
    ]

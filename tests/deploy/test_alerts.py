"""The shipped alerts are valid, unit-tested by promtool, documented, and published from one source.

Every promtool test runs the real `promtool` (Debian package `prometheus`); without it they
FAIL, they never skip. The rule file is alerts/kubevirt-update-exporter.rules.yaml; its promtool
unit tests are alerts/tests/*.yaml.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from exporter.metrics import FAMILIES
from exporter.model import ACTIONS, METHODS, OUTDATED_REASONS, RESOURCES, UPDATE_METHODS
from exporter.selfmetrics import RESULTS
from tests import REPO

ALERTS = REPO / "alerts"
RULES = ALERTS / "kubevirt-update-exporter.rules.yaml"
PROMETHEUS_RULE = ALERTS / "prometheusrule.yaml"
UNIT_TESTS = sorted((ALERTS / "tests").glob("*.yaml"))
RUNBOOKS = REPO / "docs" / "runbooks"
ALERTS_DOC = REPO / "docs" / "alerts.md"
BUILD_SCRIPT = REPO / "scripts" / "build_prometheusrule.py"
CHART_RULES = REPO / "charts" / "kubevirt-update-exporter" / "files" / RULES.name

#: Our alerts' runbook_url by default: the runbook's path in this repository (docs/alerts.md);
#: the build parameter --runbook-base-url and the chart value prometheusRule.runbookBaseURL
#: point them where an installation publishes docs/runbooks/.
RUNBOOK_BASE = "docs/runbooks/"
#: Hosts that only stand in for a real one: none may ship by default.
PLACEHOLDER_HOSTS = (
    "example.com",
    "example.org",
    "example.net",
    "github.com/kubevirt-update-exporter/",
)
UPSTREAM_ALERT = "OutdatedVirtualMachineInstanceWorkloads"
#: kubevirt/kubevirt: pkg/monitoring/rules/alerts/vms.go (+ the common labels and runbook URL
#: template of pkg/monitoring/rules/alerts/prometheus.go).
UPSTREAM_LABELS = {
    "severity": "warning",
    "operator_health_impact": "none",
    "kubernetes_operator_part_of": "kubevirt",
    "kubernetes_operator_component": "kubevirt",
}
UPSTREAM_SUMMARY = (
    "Some running VMIs are still active in outdated pods after KubeVirt control plane update "
    "has completed."
)
UPSTREAM_RUNBOOK = "https://kubevirt.io/monitoring/runbooks/OutdatedVirtualMachineInstanceWorkloads"
SOURCE = {"source": "kubevirt-update-exporter"}

FAMILY_LABELS = {f.name: set(f.labels) for f in FAMILIES}
#: Labels Prometheus adds to every scraped series (honor_labels keeps ours).
TARGET_LABELS = {"job", "instance"}
#: Allowed values of the enum-valued labels, from the exporter's own vocabulary.
LABEL_VALUES: dict[str, set[str]] = {
    "method": set(METHODS),
    "action": set(ACTIONS),
    "reason": set(OUTDATED_REASONS),
    "result": set(RESULTS),
    "resource": set(RESOURCES),
}
#: Families whose label of that name has another vocabulary.
OTHER_VOCABULARY: dict[tuple[str, str], set[str] | None] = {
    ("kubevirt_update_kubevirt_method_enabled", "method"): set(UPDATE_METHODS),
    ("kubevirt_update_vmi_not_live_migratable", "reason"): None,  # upstream's free-form reasons
    ("kubevirt_update_not_live_migratable_vmis", "reason"): None,
}
SELECTOR = re.compile(r"\b(kubevirt_update_\w+|up)\s*\{([^}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*[\"']([^\"']*)[\"']")
BY_CLAUSE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


# -- fixtures and readers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    """The real promtool; its absence fails the test."""
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(path).exists():
        pytest.fail("promtool not found: install Debian package `prometheus` (apt-get install)")
    return path


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `command`, capturing text output; never raises on a non-zero exit."""
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def rule_file(path: Path = RULES) -> dict[str, Any]:
    """The parsed rule file."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def alerting_rules(rules: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every alerting rule of the rule file, in file order."""
    groups = (rules or rule_file())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def alert(name: str) -> dict[str, Any]:
    """The alerting rule called `name`."""
    (found,) = [rule for rule in alerting_rules() if rule["alert"] == name]
    return found


def unit_test_groups() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every test group of every promtool unit-test file."""
    for path in UNIT_TESTS:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            yield path, group


def minutes(duration: str) -> int:
    """A Prometheus duration made of h/m parts (`24h`, `1h30m`, `15m`) in minutes."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?", duration)
    assert parts is not None and duration, f"unsupported duration {duration!r}"
    return int(parts.group(1) or 0) * 60 + int(parts.group(2) or 0)


def allowed_values(family: str, label: str, value: str) -> set[str]:
    """The values `label` of `family` may take (`{value}` itself when it is free-form)."""
    vocabulary = OTHER_VOCABULARY.get((family, label), LABEL_VALUES.get(label))
    return {value} if vocabulary is None else vocabulary


def promql_texts(rule: dict[str, Any]) -> list[str]:
    """The expression and every annotation (template queries are PromQL too)."""
    return [rule["expr"], *rule["annotations"].values()]


# -- promtool ---------------------------------------------------------------------------------


def test_rule_file_passes_promtool_check_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerting_rules())} rules found" in result.stdout


@pytest.mark.parametrize("test_file", UNIT_TESTS, ids=[p.stem for p in UNIT_TESTS])
def test_promtool_unit_tests_pass(promtool: str, test_file: Path) -> None:
    result = run(promtool, "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_fires_at_its_for_and_not_one_minute_before_in_some_named_case() -> None:
    covered: dict[str, list[str]] = {}
    for path, group in unit_test_groups():
        assert group.get("name"), f"{path.name}: every test group needs a name"
        by_time: dict[tuple[str, int], bool] = {
            (case["alertname"], minutes(case["eval_time"])): bool(case.get("exp_alerts"))
            for case in group.get("alert_rule_test", [])
        }
        for (name, at), fires in by_time.items():
            before = by_time.get((name, at - 1))
            if fires and before is False and at >= minutes(alert(name)["for"]):
                covered.setdefault(name, []).append(group["name"])
    missing = {rule["alert"] for rule in alerting_rules()} - covered.keys()
    assert not missing, f"no case where these fire at t and not at t-1m: {sorted(missing)}"


def test_unit_test_series_use_the_exporters_metric_names_labels_and_values() -> None:
    for path, group in unit_test_groups():
        for item in group.get("input_series", []):
            match = re.fullmatch(r"(\w+)(?:\{(.*)\})?", item["series"])
            assert match is not None, (path.name, item["series"])
            name = match.group(1)
            labels = {key: value for key, _, value in MATCHER.findall(match.group(2) or "")}
            if name == "up":
                assert set(labels) == TARGET_LABELS, (path.name, item["series"])
                continue
            assert name in FAMILY_LABELS, (path.name, name)
            assert set(labels) - TARGET_LABELS == FAMILY_LABELS[name], (path.name, item["series"])
            for key, value in labels.items():
                assert value in allowed_values(name, key, value), (path.name, item["series"])


def covers_alert(group: dict[str, Any], name: str) -> bool:
    """The test group has a case about alert `name`."""
    return any(case["alertname"] == name for case in group.get("alert_rule_test", []))


def load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_prometheusrule", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mutated_alerts_dir(tmp_path: Path, name: str, **changes: str) -> Path:
    """A copy of alerts/ whose alert `name` has the given fields replaced."""
    copy = tmp_path / "alerts"
    shutil.copytree(ALERTS, copy)
    rules = rule_file()
    for rule in alerting_rules(rules):
        if rule["alert"] == name:
            rule.update(changes)
    (copy / RULES.name).write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return copy / "tests"


def failing_unit_tests(promtool: str, tests_dir: Path, name: str) -> str:
    """promtool's output over the unit-test files that test alert `name`, asserting it failed."""
    files = sorted({path.name for path, group in unit_test_groups() if covers_alert(group, name)})
    assert files, f"no unit test of {name}"
    result = run(promtool, "test", "rules", *files, cwd=tests_dir)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"the unit tests did not notice the change:\n{output}"
    return output


@pytest.mark.parametrize("name", [r["alert"] for r in alerting_rules()])
def test_unit_tests_fail_when_an_alerts_for_is_one_minute_shorter(
    promtool: str, tmp_path: Path, name: str
) -> None:
    shorter = f"{minutes(alert(name)['for']) - 1}m"
    tests_dir = mutated_alerts_dir(tmp_path, name, **{"for": shorter})
    output = failing_unit_tests(promtool, tests_dir, name)
    assert f"alertname: {name}" in output


def test_unit_tests_fail_when_the_24h_alert_is_keyed_on_method_and_action(
    promtool: str, tmp_path: Path
) -> None:
    flipping = "sum by (namespace, method, action) (kubevirt_update_outdated_vmis) > 0"
    tests_dir = mutated_alerts_dir(tmp_path, UPSTREAM_ALERT, expr=flipping)
    output = failing_unit_tests(promtool, tests_dir, UPSTREAM_ALERT)
    assert "keeps its 24h timer while VMIs move between method/action groups" in output


# -- content of the rules ---------------------------------------------------------------------


def test_every_alert_has_severity_source_summary_description_and_runbook() -> None:
    for rule in alerting_rules():
        assert rule["labels"].get("severity") in {"info", "warning", "critical"}, rule["alert"]
        assert rule["labels"].get("source") == SOURCE["source"], rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        assert rule.get("for"), rule["alert"]


def test_outdated_workloads_keeps_upstreams_name_for_labels_summary_and_runbook() -> None:
    rule = alert(UPSTREAM_ALERT)
    assert rule["for"] == "24h"
    assert rule["expr"] == "sum by (namespace) (kubevirt_update_outdated_vmis) > 0"
    assert rule["labels"] == {**UPSTREAM_LABELS, **SOURCE}
    assert rule["annotations"]["summary"] == UPSTREAM_SUMMARY
    assert rule["annotations"]["runbook_url"] == UPSTREAM_RUNBOOK


def test_long_for_alerts_are_never_keyed_on_method_or_action() -> None:
    for rule in alerting_rules():
        if minutes(rule["for"]) <= 15:
            continue
        for clause in BY_CLAUSE.findall(rule["expr"]):
            grouping = {label.strip() for label in clause.split(",")}
            assert not grouping & {"method", "action"}, (rule["alert"], clause)


def test_rules_select_only_exported_metrics_labels_and_label_values() -> None:
    for rule in alerting_rules():
        texts = promql_texts(rule)
        for name in re.findall(r"\bkubevirt_update_\w+", " ".join(texts)):
            assert name in FAMILY_LABELS, (rule["alert"], name)
        for text in texts:
            for name, matchers in SELECTOR.findall(text):
                allowed = FAMILY_LABELS.get(name, set()) | TARGET_LABELS
                for label, _, value in MATCHER.findall(matchers):
                    assert label in allowed, (rule["alert"], name, label)
                    # '%s' is filled in by the template's printf
                    for each in set(value.split("|")) - {"", "%s"}:
                        assert each in allowed_values(name, label, each), (rule["alert"], value)


def test_no_description_advises_virtctl_stop() -> None:
    for rule in alerting_rules():
        assert_only_warns_against_virtctl_stop(rule["annotations"]["description"], rule["alert"])


def assert_only_warns_against_virtctl_stop(text: str, where: str) -> None:
    for found in re.finditer(r"virtctl stop", text):
        before = text[max(0, found.start() - 30) : found.start()]
        assert re.search(r"\bnot\b", before.replace("*", "")), (where, before)


# -- runbooks and docs ------------------------------------------------------------------------


def test_our_alerts_link_to_our_runbooks_which_have_the_four_sections() -> None:
    for rule in alerting_rules():
        if rule["alert"] == UPSTREAM_ALERT:
            continue
        name = rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}{name}.md"
        text = (RUNBOOKS / f"{name}.md").read_text(encoding="utf-8")
        headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
        assert text.startswith(f"# {name}\n"), name
        assert headings == ["Meaning", "Impact", "Diagnosis", "Mitigation"], name


def test_no_placeholder_host_ships_in_any_runbook_url_by_default() -> None:
    shipped = [RULES, PROMETHEUS_RULE, CHART_RULES, *UNIT_TESTS]
    for path in shipped:
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            if "runbook_url" in line:
                assert not any(host in line for host in PLACEHOLDER_HOSTS), (path, line)
    for rule in alerting_rules():
        url = rule["annotations"]["runbook_url"]
        # Either upstream's published runbook, or a runbook file of this repository.
        assert url == UPSTREAM_RUNBOOK or (REPO / url).is_file(), url


def test_the_runbook_base_url_is_a_build_parameter_of_alerts(tmp_path: Path) -> None:
    base = "https://git.internal.test/ops/kubevirt-update-exporter/-/blob/main/docs/runbooks"
    for kind, flags in (("PrometheusRule", []), ("rules", ["--rules"])):
        output = tmp_path / f"{kind}.yaml"
        subprocess.run(
            [
                sys.executable,
                str(BUILD_SCRIPT),
                "--runbook-base-url",
                base,
                "--output",
                str(output),
                *flags,
            ],
            check=True,
        )
        built = yaml.safe_load(output.read_text())
        groups = built["spec"]["groups"] if kind == "PrometheusRule" else built["groups"]
        urls = {r["alert"]: r["annotations"]["runbook_url"] for g in groups for r in g["rules"]}
        for name, url in urls.items():
            expected = UPSTREAM_RUNBOOK if name == UPSTREAM_ALERT else f"{base}/{name}.md"
            assert url == expected, (kind, name)
    # The committed files stay the defaults.
    check = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--check"], check=False)
    assert check.returncode == 0


def test_runbooks_never_advise_virtctl_stop_and_use_the_exporters_commands() -> None:
    runbooks = sorted(RUNBOOKS.glob("*.md"))
    assert runbooks
    for path in runbooks:
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"```.*?```", text, flags=re.DOTALL):
            assert "virtctl stop" not in block, path.name
        assert_only_warns_against_virtctl_stop(text, path.name)
    needs_action = (RUNBOOKS / "OutdatedVirtualMachineInstanceNeedsAction.md").read_text()
    assert "kubevirt-update-exporter report --namespace" in needs_action
    assert "kubevirt-update-exporter plan --namespace <namespace> | kubectl create -f -" in (
        needs_action
    )
    assert "pkg/virt-api/rest/lifecycle.go" in needs_action


def normalized(text: str) -> str:
    return " ".join(text.split())


def test_alerts_doc_lists_every_alert_with_its_expression() -> None:
    doc = normalized(ALERTS_DOC.read_text(encoding="utf-8"))
    for rule in alerting_rules():
        assert f"### {rule['alert']}" in doc, rule["alert"]
        assert normalized(rule["expr"]) in doc, rule["alert"]


# -- the PrometheusRule -----------------------------------------------------------------------


def test_prometheusrule_is_generated_from_the_rule_file_and_current() -> None:
    result = run(sys.executable, str(BUILD_SCRIPT), "--check")
    assert result.returncode == 0, result.stderr
    generated = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert generated["apiVersion"] == "monitoring.coreos.com/v1"
    assert generated["kind"] == "PrometheusRule"
    assert generated["spec"]["groups"] == rule_file()["groups"]


def test_prometheusrule_check_fails_on_a_stale_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build = load_build_script()
    stale = tmp_path / "alerts" / "prometheusrule.yaml"
    stale.parent.mkdir()
    stale.write_text(PROMETHEUS_RULE.read_text().replace("for: 24h", "for: 12h"))
    monkeypatch.setattr(build, "REPO", tmp_path)
    monkeypatch.setattr(build, "OUTPUT", stale)
    assert build.main(["--check"]) == 1
    assert "alerts/prometheusrule.yaml is stale" in capsys.readouterr().err
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0

"""The example Alertmanager configuration routes our alerts and hides upstream's duplicate.

Runs the real `amtool` and `prometheus-alertmanager` (Debian package `prometheus-alertmanager`);
without them these tests FAIL, they never skip. Routing is checked with `amtool config routes
test`; the inhibition with a real Alertmanager on loopback, because amtool cannot evaluate
inhibit rules offline.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.model import ACTIONS
from tests import REPO

CONFIG = REPO / "docs" / "alertmanager" / "alertmanager.yaml"
RULES = REPO / "alerts" / "kubevirt-update-exporter.rules.yaml"
OURS = {"source": "kubevirt-update-exporter"}
OUTDATED = "OutdatedVirtualMachineInstanceWorkloads"
#: Upstream's alert as virt-controller's rule produces it: virt-controller's namespace, no source.
UPSTREAM_OUTDATED = {
    "alertname": OUTDATED,
    "namespace": "kubevirt",
    "severity": "warning",
    "operator_health_impact": "none",
    "kubernetes_operator_part_of": "kubevirt",
    "kubernetes_operator_component": "kubevirt",
}
OUR_OUTDATED = {**UPSTREAM_OUTDATED, "namespace": "team-a", **OURS}


def binary(name: str) -> str:
    """The path of an installed binary; its absence fails the test."""
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(path).exists():
        pytest.fail(f"{name} not found: install Debian package `prometheus-alertmanager`")
    return path


def routes(labels: Mapping[str, str]) -> list[str]:
    """The receivers `amtool config routes test` picks for an alert with `labels`."""
    result = subprocess.run(
        [
            binary("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG}",
            *(f"{key}={value}" for key, value in labels.items()),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(",")


def test_example_config_passes_amtool_check_config() -> None:
    result = subprocess.run(
        [binary("amtool"), "check-config", str(CONFIG)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "1 inhibit rules" in result.stdout


def ours(**labels: str) -> dict[str, str]:
    """Labels of one of our alerts in namespace team-a."""
    return {"severity": "warning", "namespace": "team-a", **OURS, **labels}


NEEDS_ACTION = "OutdatedVirtualMachineInstanceNeedsAction"


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        pytest.param(OUR_OUTDATED, "tickets", id="ours-outdated"),
        pytest.param(UPSTREAM_OUTDATED, "tickets", id="upstream-outdated"),
        pytest.param(ours(alertname=NEEDS_ACTION, action="restart"), "vm-owners", id="restart"),
        pytest.param(ours(alertname=NEEDS_ACTION, action="migrate"), "virt-platform", id="migrate"),
        pytest.param(ours(alertname=NEEDS_ACTION, action="manual"), "virt-platform", id="manual"),
        pytest.param(
            ours(alertname="VirtualMachineInstanceUpdateMigrationsFailing"),
            "virt-platform",
            id="failing-migrations",
        ),
        pytest.param(ours(alertname="KubevirtUpdateExporterDown"), "monitoring", id="down"),
        pytest.param(ours(alertname="KubevirtUpdateExporterCountDrift"), "monitoring", id="drift"),
    ],
)
def test_alerts_route_by_alert_action_and_severity(
    labels: Mapping[str, str], receiver: str
) -> None:
    assert routes(labels) == [receiver]


def test_someone_elses_alerts_route_by_severity_only() -> None:
    assert routes({"alertname": "KubeNodeNotReady", "severity": "critical"}) == ["pager"]
    assert routes({"alertname": "KubeNodeNotReady", "severity": "warning"}) == ["tickets"]
    assert routes({"alertname": "Watchdog", "severity": "none"}) == ["default"]
    # Someone else's alert that happens to carry an `action` label is not ours.
    assert routes({"alertname": "X", "action": "restart", "severity": "warning"}) == ["tickets"]


def test_every_shipped_alert_reaches_a_team_not_the_default_receiver() -> None:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            human_actions = [a for a in ACTIONS if a != "wait"]
            for action in human_actions if "action" in rule["expr"] else [None]:
                labels = {"alertname": rule["alert"], **rule["labels"]}
                if action is not None:
                    labels["action"] = action
                assert routes(labels) != ["default"], labels


# -- inhibition, with a real Alertmanager -------------------------------------------------------


@dataclass
class Alertmanager:
    url: str

    def post(self, *alerts: Mapping[str, str]) -> None:
        """Send firing alerts with `alerts` as their labels."""
        body = json.dumps([{"labels": dict(labels)} for labels in alerts]).encode()
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def states(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Each alert's status, by (alertname, namespace, source)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as response:
            alerts = json.load(response)
        return {
            (
                a["labels"]["alertname"],
                a["labels"].get("namespace", ""),
                a["labels"].get("source", ""),
            ): a["status"]
            for a in alerts
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    """A fresh Alertmanager running the example configuration, alone (no cluster peers)."""
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [
            binary("prometheus-alertmanager"),
            f"--config.file={CONFIG}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, tmp_path / "alertmanager.log")
        yield Alertmanager(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"alertmanager exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"alertmanager not ready after 30 s:\n{log.read_text()}")


def test_our_outdated_alert_inhibits_upstreams_in_any_namespace(
    alertmanager: Alertmanager,
) -> None:
    alertmanager.post(UPSTREAM_OUTDATED, OUR_OUTDATED)
    states = alertmanager.states()
    upstream = states[(OUTDATED, "kubevirt", "")]
    ours = states[(OUTDATED, "team-a", "kubevirt-update-exporter")]
    assert upstream["state"] == "suppressed"
    assert upstream["inhibitedBy"]
    assert ours["state"] == "active"
    assert ours["inhibitedBy"] == []


def test_upstreams_alert_stays_active_while_ours_does_not_fire(
    alertmanager: Alertmanager,
) -> None:
    needs_action = {
        "alertname": "OutdatedVirtualMachineInstanceNeedsAction",
        "namespace": "team-a",
        "action": "restart",
        "severity": "warning",
        **OURS,
    }
    alertmanager.post(UPSTREAM_OUTDATED, needs_action)
    states = alertmanager.states()
    assert states[(OUTDATED, "kubevirt", "")]["state"] == "active"
    assert states[(needs_action["alertname"], "team-a", OURS["source"])]["state"] == "active"

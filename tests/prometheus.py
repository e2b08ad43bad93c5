"""A real Prometheus for end-to-end tests: started on loopback, queried over its HTTP API.

Contract: `running_prometheus(target, workdir)` starts `/usr/bin/prometheus` (Debian package
`prometheus`) scraping `target` every second under the job name the shipped rules expect, with
`honor_labels: true` and alerts/kubevirt-update-exporter.rules.yaml loaded, and yields once the
first scrape succeeded; without Prometheus the calling test fails, it never skips.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import REPO
from tests.cluster import free_port
from tests.exporter_process import eventually

RULES = REPO / "alerts" / "kubevirt-update-exporter.rules.yaml"
DASHBOARD = REPO / "dashboards" / "kubevirt-update-exporter.json"
JOB = "kubevirt-update-exporter"

Result = list[dict[str, Any]]


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> Result:
        """The instant vector `expr` evaluates to now."""
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        result: Result = data["result"]
        return result


def prometheus_config(target: str) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "honor_labels": True,
                "static_configs": [{"targets": [target]}],
            }
        ],
    }


@contextlib.contextmanager
def prometheus_process(
    binary: str | Path, config: dict[str, Any], workdir: Path
) -> Iterator[Prometheus]:
    """`binary` run with `config` on a free loopback port, its data and log in `workdir`;
    stopped when the context ends."""
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Prometheus(f"http://127.0.0.1:{port}", process, log)
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def running_prometheus(target: str, workdir: Path) -> Iterator[Prometheus]:
    """A real Prometheus scraping `target` every second under JOB with the shipped rules."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        pytest.fail("prometheus not found: install Debian package `prometheus`")
    with prometheus_process(binary, prometheus_config(target), workdir) as client:

        def ready() -> bool:
            assert client.process.poll() is None, (
                f"prometheus exited:\n{client.log.read_text()[-3000:]}"
            )
            try:
                with urllib.request.urlopen(f"{client.url}/-/ready", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        eventually(ready, timeout=60, what="prometheus /-/ready")
        eventually(lambda: client.query(f'up{{job="{JOB}"}} == 1'), timeout=60, what="first scrape")
        yield client


def rules() -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {r["alert"]: r for g in loaded["groups"] for r in g["rules"] if "alert" in r}


def labelled(result: Result, *labels: str) -> dict[tuple[str, ...], float]:
    """{(values of `labels`): value} of an instant vector."""
    return {
        tuple(sample["metric"].get(label, "") for label in labels): float(sample["value"][1])
        for sample in result
    }

"""The version lives in exporter/__init__.py; the package, the image and the chart follow it."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

from exporter import __version__
from tests import REPO

SCRIPT = REPO / "scripts" / "sync_version.py"
CHART = Path("charts/kubevirt-update-exporter/Chart.yaml")
COPIED = (
    Path("exporter/__init__.py"),
    Path("Dockerfile"),
    CHART,
    Path("examples/sidecar/prometheus-patch.yaml"),
)


def sync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_the_installed_package_reports_the_version_of_exporter_init() -> None:
    assert importlib.metadata.version("kubevirt-update-exporter") == __version__


def test_image_chart_and_examples_spell_the_version_of_exporter_init() -> None:
    checked = sync("--check")
    assert checked.returncode == 0, f"run python scripts/sync_version.py: {checked.stderr}"
    assert f'appVersion: "{__version__}"' in (REPO / CHART).read_text()
    assert f"ARG VERSION={__version__}\n" in (REPO / "Dockerfile").read_text()


def test_sync_version_finds_and_fixes_a_chart_that_lags_behind(tmp_path: Path) -> None:
    for path in COPIED:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, tmp_path / path)
    init = tmp_path / "exporter/__init__.py"
    init.write_text(init.read_text().replace(f'"{__version__}"', '"9.8.7"'))

    stale = sync("--check", "--root", str(tmp_path))
    assert stale.returncode == 1
    assert str(CHART) in stale.stderr and "Dockerfile" in stale.stderr

    assert sync("--root", str(tmp_path)).returncode == 0
    assert sync("--check", "--root", str(tmp_path)).returncode == 0
    chart = (tmp_path / CHART).read_text()
    assert 'appVersion: "9.8.7"' in chart
    assert f"version: {__version__}\n" in chart  # the chart's own version is bumped by hand
    assert "kubevirt-update-exporter:9.8.7 serve" in (tmp_path / "Dockerfile").read_text()

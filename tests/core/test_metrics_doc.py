"""METRICS.md is generated from the metric table and must be current."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from exporter.metrics import FAMILIES
from tests import REPO as ROOT

SCRIPT = ROOT / "scripts" / "metrics_doc.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("metrics_doc", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metrics_md_is_what_the_metric_table_generates() -> None:
    wanted = load_script().render()
    current = (ROOT / "METRICS.md").read_text(encoding="utf-8")
    assert current == wanted, "METRICS.md is stale: run python scripts/metrics_doc.py"


def test_metrics_md_documents_every_family_with_its_labels() -> None:
    current = (ROOT / "METRICS.md").read_text(encoding="utf-8")
    for family in FAMILIES:
        (row,) = [line for line in current.splitlines() if line.startswith(f"| `{family.name}` |")]
        for label in family.labels:
            assert f"`{label}`" in row


def test_the_check_mode_fails_on_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_script()
    target = tmp_path / "METRICS.md"
    monkeypatch.setattr(module, "TARGET", target)
    target.write_text("# stale\n", encoding="utf-8")
    assert module.main(["--check"]) == 1
    assert module.main([]) == 0
    assert module.main(["--check"]) == 0


def test_the_script_runs_as_a_command() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr

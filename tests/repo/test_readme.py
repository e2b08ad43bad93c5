"""The README's first screen tells the truth: a real /metrics sample, and CI's test command."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cluster import REPO
from tests.exporter_process import ExporterProcess, parse_exposition

README = (REPO / "README.md").read_text()


def readme_block(language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", README, re.DOTALL)
    assert match, f"no ```{language} block in README.md"
    return match.group(1)


def test_readme_metrics_sample_is_real_output_of_the_bundled_snapshot(tmp_path: Path) -> None:
    sample = parse_exposition(readme_block("text"))
    assert len(sample) >= 10
    args = ["--snapshot", str(REPO / "examples" / "cluster-snapshot.yaml")]
    with ExporterProcess(args, workdir=tmp_path) as proc:
        proc.wait_ready()
        real = proc.scrape()
    stale = {key: value for key, value in sample.items() if real.get(key) != value}
    assert not stale, f"README sample lines not in the real output (refresh them): {stale}"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = [
        line for line in readme_block("sh").splitlines() if line and not line.startswith("#")
    ]
    assert commands[-1] == "scripts/test"
    ci = (REPO / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line.startswith("exec ")] == ["exec scripts/test"]


def test_readme_run_command_serves_the_bundled_snapshot() -> None:
    run = readme_block("sh").splitlines()[1]
    assert "--snapshot examples/cluster-snapshot.yaml" in run
    assert Path(REPO / "examples" / "cluster-snapshot.yaml").is_file()

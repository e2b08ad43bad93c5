"""Copy the alert rules and the Grafana dashboard into the Helm chart's files/ directory.

Contract: after `python scripts/sync_chart_files.py`, every file of `CHART_COPIES` in the chart is
byte-identical to its source in the repository (Helm cannot read files outside the chart
directory, so the chart ships copies). `--check` changes nothing and exits 1 naming every copy
that is missing or differs, so CI can tell a stale chart from a fresh one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHART_FILES = REPO / "charts" / "kubevirt-update-exporter" / "files"

#: source in the repository -> copy in the chart
CHART_COPIES: dict[Path, Path] = {
    REPO / "alerts" / "kubevirt-update-exporter.rules.yaml": CHART_FILES
    / "kubevirt-update-exporter.rules.yaml",
    REPO / "dashboards" / "kubevirt-update-exporter.json": CHART_FILES
    / "kubevirt-update-exporter.json",
}


def stale_copies(copies: dict[Path, Path]) -> list[str]:
    """Describe each copy that is missing or differs from its source (empty when all match)."""
    problems = []
    for source, copy in copies.items():
        if not source.is_file():
            problems.append(f"{source.relative_to(REPO)}: source is missing")
        elif not copy.is_file():
            problems.append(
                f"{copy.relative_to(REPO)}: missing (copy of {source.relative_to(REPO)})"
            )
        elif copy.read_bytes() != source.read_bytes():
            problems.append(f"{copy.relative_to(REPO)}: differs from {source.relative_to(REPO)}")
    return problems


def sync(copies: dict[Path, Path]) -> list[str]:
    """Copy every existing source over its chart copy; return the sources that are missing."""
    missing = []
    for source, copy in copies.items():
        if not source.is_file():
            missing.append(f"{source.relative_to(REPO)}: source is missing")
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(source.read_bytes())
    return missing


def main(argv: list[str] | None = None) -> int:
    """Sync (default) or check (--check) the chart's copies; 1 with a message on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; fail if a copy is stale"
    )
    args = parser.parse_args(argv)
    problems = stale_copies(CHART_COPIES) if args.check else sync(CHART_COPIES)
    for problem in problems:
        print(f"sync_chart_files: {problem}", file=sys.stderr)
    if problems and args.check:
        print("sync_chart_files: run scripts/sync_chart_files.py", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

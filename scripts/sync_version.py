"""Carry the version from exporter/__init__.py (its one source) into the files that repeat it.

Contract: `exporter.__version__` is the version; pyproject.toml reads it (setuptools dynamic
version). After `python scripts/sync_version.py`, each place of `PLACES` (the image's VERSION
build argument and the tags in its usage comment, the chart's appVersion, the sidecar example's
image) spells that version. `--check` changes nothing and exits 1 naming every file that spells
another one. The chart's own `version` is not touched: it is bumped on every chart change.
`--root DIR` works on a copy of the repository (the tests use it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VERSION_FILE = Path("exporter/__init__.py")
_VERSION = r"[0-9A-Za-z.+-]+"

#: file -> patterns whose group 2 is the version (groups 1 and 3 are kept).
PLACES: dict[Path, tuple[re.Pattern[str], ...]] = {
    Path("Dockerfile"): (
        re.compile(rf"^(ARG VERSION=)({_VERSION})()$", re.MULTILINE),
        re.compile(rf"(kubevirt-update-exporter:)({_VERSION})( )"),
    ),
    Path("charts/kubevirt-update-exporter/Chart.yaml"): (
        re.compile(rf'^(appVersion: ")({_VERSION})(")$', re.MULTILINE),
    ),
    Path("examples/sidecar/prometheus-patch.yaml"): (
        re.compile(rf'(image: "kubevirt-update-exporter:)({_VERSION})(")'),
    ),
}


def source_version(root: Path) -> str:
    """The `__version__` of exporter/__init__.py under `root`."""
    text = (root / VERSION_FILE).read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"{VERSION_FILE}: no __version__ line")
    return match.group(1)


def synced(text: str, patterns: tuple[re.Pattern[str], ...], version: str) -> tuple[str, int]:
    """`text` with every pattern's version replaced, and how many places were found."""
    found = 0
    for pattern in patterns:
        text, count = pattern.subn(lambda m: f"{m.group(1)}{version}{m.group(3)}", text)
        found += count
    return text, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root")
    args = parser.parse_args(argv)
    version = source_version(args.root)
    problems = []
    for path, patterns in PLACES.items():
        text = (args.root / path).read_text()
        new, found = synced(text, patterns, version)
        if found < len(patterns):
            problems.append(f"{path}: a version place is missing (expected {len(patterns)})")
        elif new != text:
            if args.check:
                problems.append(f"{path}: does not spell version {version}")
            else:
                (args.root / path).write_text(new)
                print(f"{path}: now {version}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The cost curve: the real `serve` process at growing fleet sizes, against a synthetic list source.

    .venv/bin/python -m benchmarks.curve [--vmis 10000 100000 300000 1000000] [--padded]

A script, not a test. For an idle fleet (10 VMIs) and each size, in a fresh exporter process
reading benchmarks/synthetic_source.py (no API server; compact ~2.5 KiB VMIs, each with its VM,
unless `--padded` asks for 5-18 KiB ones): seconds from start to /readyz 200, RSS then and after
40 scrapes (20 identity, then 20 gzip), scrape p50/p99 of each, and body size. Prints one JSON
line per size and a table whose "per VMI" columns show where the cost stops being linear: each
is divided by the fleet size, so a linear cost keeps its figure as the fleet grows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.memory import IDLE_VMIS, measure, mib, synthetic_source  # noqa: E402


def row(vmis: int, idle: Mapping[str, Any], run: Mapping[str, Any]) -> str:
    per_vmi = (run["rss_scraped"] - idle["rss_scraped"]) / vmis
    identity, gzipped = run["identity"], run["gzip"]
    return (
        f"| {vmis:,} | {run['ready_seconds']:.1f} | {run['ready_seconds'] * 1e6 / vmis:.0f} | "
        f"{mib(run['rss_scraped'])} | {per_vmi:,.0f} | {identity['p50_ms']} / "
        f"{identity['p99_ms']} | {identity['p99_ms'] * 1000 / vmis * 1000:.0f} | "
        f"{gzipped['p50_ms']} / {gzipped['p99_ms']} | {mib(identity['bytes'])} | "
        f"{identity['bytes'] / vmis:.0f} |"
    )


HEADER = """\
| VMIs | ready s | ready us per VMI | RSS MiB after scrapes | RSS B per VMI above idle | \
identity p50 / p99 ms | p99 ns per VMI | gzip p50 / p99 ms | body MiB | body B per VMI |
|---|---|---|---|---|---|---|---|---|---|"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--vmis", type=int, nargs="+", default=[10_000, 100_000, 300_000, 1_000_000]
    )
    parser.add_argument("--padded", action="store_true", help="5-18 KiB VMIs instead of ~2.5 KiB")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="curve-bench-") as tmp:
        workdir = Path(tmp)
        compact = not args.padded
        with synthetic_source(IDLE_VMIS, workdir, compact=compact) as flags:
            idle = measure(flags, workdir=workdir, scrapes=40, bursts=0, burst_size=0, env={})
        print(json.dumps({"vmis": IDLE_VMIS, **idle}), flush=True)
        for vmis in args.vmis:
            with synthetic_source(vmis, workdir, compact=compact) as flags:
                run = measure(flags, workdir=workdir, scrapes=40, bursts=0, burst_size=0, env={})
            print(json.dumps({"vmis": vmis, **run}), flush=True)
            rows.append(row(vmis, idle, run))
            print("\n".join([HEADER, *rows]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

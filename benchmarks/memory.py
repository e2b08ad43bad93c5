"""RSS per VMI of the real `serve` process, in watch and snapshot mode, and after scrape bursts.

    .venv/bin/python -m benchmarks.memory --vmis 100000 [--modes watch snapshot]
        [--scrapes 100] [--bursts 5] [--burst-size 200] [--env NAME=VALUE ...]

A script, not a test. Per mode it runs two exporter processes one after the other, an idle one
(10 VMIs) and a loaded one (N VMIs), each through the same steps, and prints one JSON line each:
- ready: seconds from process start to /readyz 200, RSS then;
- after half of `--scrapes` sequential gzip scrapes (what Prometheus asks for): RSS; then after
  the other half as identity scrapes: RSS, and p50/p99 of each kind;
- `--bursts` bursts of `--burst-size` concurrent gzip scrapes, with a 2 s pause after each: RSS
  after each burst and the peak during it (VmHWM, reset before each burst).
Then the figures that matter, as ratios against the idle process measured in the same run:
RSS per VMI above idle after the scrapes, and RSS after the last burst / RSS before the first.

Sources: watch mode lists and watches benchmarks/synthetic_source.py (5-18 KiB VMIs, each
with its VM, paginated as the API server pages them; no API server); snapshot mode serves a
JSON List written here from examples/cluster-snapshot.yaml's objects (compact, ~2.7 KiB per
VMI with its VM, the size `kubectl get -o json` prints for them; two thirds outdated, as right
after an upgrade), or with `--snapshot-objects synthetic` from the synthetic source's compact
objects (30% outdated).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import procstat  # noqa: E402
from benchmarks.bench_exposition import Objects  # noqa: E402
from benchmarks.synthetic_source import kubeconfig  # noqa: E402
from tests import builders  # noqa: E402
from tests.exporter_process import ExporterProcess  # noqa: E402

IDLE_VMIS = 10
EXAMPLE = ROOT / "examples" / "cluster-snapshot.yaml"


# --- sources ----------------------------------------------------------------------------------


def write_snapshot(path: Path, vmis: int) -> Path:
    """A JSON List of `vmis` VMIs copied from the example (renamed, one namespace per 1,000),
    each with its VM where the example has one, and the example's KubeVirt CR."""
    documents = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    objects = [o for d in documents for o in (d["items"] if d.get("kind") == "List" else [d])]
    templates = [o for o in objects if o["kind"] == "VirtualMachineInstance"]
    vms = {_key(o): o for o in objects if o["kind"] == "VirtualMachine"}
    kubevirt = next(o for o in objects if o["kind"] == "KubeVirt")
    with path.open("w") as out:
        out.write('{"apiVersion":"v1","kind":"List","items":[')
        out.write(json.dumps(kubevirt, separators=(",", ":")))
        for i in range(vmis):
            template = templates[i % len(templates)]
            namespace, name = _key(template)
            rename = {namespace: f"{namespace}-{i // 1000:04d}", name: f"{name}-{i:07d}"}
            for obj, kind in ((template, "a1b2"), (vms.get((namespace, name)), "f0e1")):
                if obj is not None:
                    text = json.dumps(obj, separators=(",", ":"))
                    for old, new in rename.items():
                        text = text.replace(f'"{old}"', f'"{new}"')
                    copy = json.loads(text)
                    copy["metadata"]["uid"] = f"{i:08x}-{kind}-4000-8000-{i:012x}"
                    out.write("," + json.dumps(copy, separators=(",", ":")))
        out.write("]}")
    return path


def write_synthetic_snapshot(path: Path, vmis: int) -> Path:
    """A JSON List of the synthetic source's compact objects (benchmarks/synthetic_source.py)."""
    objects = Objects(vmis, padded=False)
    with path.open("w") as out:
        out.write('{"apiVersion":"v1","kind":"List","items":[')
        out.write(json.dumps(builders.kubevirt(), separators=(",", ":")))
        for i in range(vmis):
            out.write(f",{objects.vmi(i)},{objects.vm(i)}")
        out.write("]}")
    return path


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


@contextmanager
def synthetic_source(vmis: int, workdir: Path, *, compact: bool = False) -> Iterator[list[str]]:
    """A running benchmarks/synthetic_source.py; yields the exporter's `--kubeconfig` flags."""
    argv = [sys.executable, "-m", "benchmarks.synthetic_source", "--vmis", str(vmis)]
    process = subprocess.Popen(
        [*argv, *(["--compact"] if compact else [])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"synthetic source did not start: {line!r}")
        config = kubeconfig(workdir / f"source-{vmis}.kubeconfig", line.split()[1])
        yield ["--kubeconfig", str(config)]
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def source(mode: str, vmis: int, workdir: Path, objects: str) -> Iterator[list[str]]:
    """The exporter flags that make it read `vmis` VMIs in `mode`."""
    if mode == "watch":
        with synthetic_source(vmis, workdir) as flags:
            yield flags
    else:
        write = write_snapshot if objects == "example" else write_synthetic_snapshot
        yield ["--snapshot", str(write(workdir / f"snapshot-{vmis}.json", vmis))]


# --- one process --------------------------------------------------------------------------------


def measure(
    flags: Sequence[str], *, workdir: Path, scrapes: int, bursts: int, burst_size: int,
    env: Mapping[str, str],
) -> dict[str, Any]:  # fmt: skip
    """Start an exporter with `flags`, take it through the steps, return its figures."""
    started = time.monotonic()
    with ExporterProcess([*flags, "--log-level", "warning"], workdir=workdir, env=env) as proc:
        proc.wait_ready(timeout=3600)
        pid = proc.popen.pid
        figures: dict[str, Any] = {
            "ready_seconds": round(time.monotonic() - started, 2),
            "rss_ready": procstat.rss_bytes(pid),
            "cpu_ready_seconds": procstat.cpu_seconds(pid),
        }
        half = scrapes // 2
        # Gzip first, as Prometheus asks: the text behind it is released once compressed.
        gzipped = asyncio.run(procstat.scrapes(proc.port, half, encoding="gzip"))
        time.sleep(2)
        figures["rss_gzip_scraped"] = procstat.rss_bytes(pid)
        identity = asyncio.run(procstat.scrapes(proc.port, scrapes - half))
        time.sleep(2)
        figures["rss_scraped"] = procstat.rss_bytes(pid)
        figures["identity"] = {**procstat.latency_ms(identity), "bytes": identity[-1].size}
        figures["gzip"] = {**procstat.latency_ms(gzipped), "bytes": gzipped[-1].size}
        figures["bursts"] = []
        for _ in range(bursts):
            procstat.reset_peak_rss(pid)
            done = asyncio.run(procstat.burst(proc.port, burst_size))
            time.sleep(2)
            figures["bursts"].append(
                {
                    "rss_after": procstat.rss_bytes(pid),
                    "rss_peak": procstat.peak_rss_bytes(pid),
                    **procstat.latency_ms(done),
                }
            )
    return figures


def mib(value: float) -> float:
    return round(value / 2**20, 1)


def summary(mode: str, vmis: int, idle: Mapping[str, Any], full: Mapping[str, Any]) -> str:
    """The ratios of one mode: per-VMI RSS above idle, burst plateau against before."""
    per_vmi_ready = (full["rss_ready"] - idle["rss_ready"]) / vmis
    per_vmi = (full["rss_scraped"] - idle["rss_scraped"]) / vmis
    per_vmi_gzip = (full["rss_gzip_scraped"] - idle["rss_gzip_scraped"]) / vmis
    lines = [
        f"{mode}, {vmis} VMIs: ready in {full['ready_seconds']} s; RSS idle "
        f"{mib(idle['rss_scraped'])} MiB, loaded {mib(full['rss_ready'])} MiB at ready, "
        f"{mib(full['rss_scraped'])} MiB after scrapes",
        f"  RSS per VMI above idle: {per_vmi_ready:.0f} B at ready, {per_vmi_gzip:.0f} B after "
        f"gzip scrapes (budget 1024 B: {'met' if per_vmi_gzip <= 1024 else 'MISSED'}), "
        f"{per_vmi:.0f} B after identity scrapes too (budget 1024 B: "
        f"{'met' if per_vmi <= 1024 else 'MISSED'})",
        f"  scrape identity p50/p99 {full['identity']['p50_ms']}/{full['identity']['p99_ms']} ms "
        f"({full['identity']['bytes']} B), gzip {full['gzip']['p50_ms']}/"
        f"{full['gzip']['p99_ms']} ms ({full['gzip']['bytes']} B)",
    ]
    for name, run in (("idle", idle), ("loaded", full)):
        if run["bursts"]:
            after = [b["rss_after"] for b in run["bursts"]]
            peaks = [b["rss_peak"] for b in run["bursts"]]
            ratio = after[-1] / run["rss_scraped"]
            lines.append(
                f"  {name}: bursts of concurrent gzip scrapes: RSS before {mib(run['rss_scraped'])}"
                f" MiB, after each {[mib(a) for a in after]} MiB (peaks {[mib(p) for p in peaks]}),"
                f" last/before {ratio:.2f} (bound 1.20: {'met' if ratio <= 1.2 else 'MISSED'})"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vmis", type=int, nargs="+", default=[100_000])
    parser.add_argument("--modes", nargs="+", choices=("watch", "snapshot"),
                        default=["watch", "snapshot"])  # fmt: skip
    parser.add_argument(
        "--snapshot-objects",
        choices=("example", "synthetic"),
        default="example",
        help="snapshot mode's VMIs: the example's (default) or the synthetic source's compact ones",
    )
    parser.add_argument("--scrapes", type=int, default=100)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--burst-size", type=int, default=200)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of the exporter processes (e.g. MALLOC_ARENA_MAX=2)",
    )
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    steps = {"scrapes": args.scrapes, "bursts": args.bursts, "burst_size": args.burst_size}
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
        workdir = Path(tmp)
        for mode in args.modes:
            with source(mode, IDLE_VMIS, workdir, args.snapshot_objects) as flags:
                idle = measure(flags, workdir=workdir, env=env, **steps)
            print(json.dumps({"mode": mode, "vmis": IDLE_VMIS, **idle}), flush=True)
            for vmis in args.vmis:
                with source(mode, vmis, workdir, args.snapshot_objects) as flags:
                    full = measure(flags, workdir=workdir, env=env, **steps)
                print(json.dumps({"mode": mode, "vmis": vmis, **full}), flush=True)
                print(summary(mode, vmis, idle, full), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

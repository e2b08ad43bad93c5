"""The exporter against kube-state-metrics, the peer users would deploy instead: same API server.

    scripts/build-ksm        # once: kube-state-metrics into the tool cache (not part of setup)
    .venv/bin/python -m benchmarks.peer_ksm --fleets 3000 10000 [--updates 20000]
        [--plot docs/peer-ksm.png]

A script, not a test (needs the `bench` extra for the plot). One real etcd + kube-apiserver
(tests/cluster) for the whole run; the fleet grows to each size in turn (5-18 KiB VMIs from
benchmarks/bench_exposition.py, each with its VM, one KubeVirt CR). At each size, for the
exporter and for kube-state-metrics with benchmarks/ksm-kubevirt.yaml, one after the other so
neither competes with the other for the two cores:
- time from process start to the first scrape that holds every VMI's info series;
- RSS then ("after sync") and after 100 scrapes (50 identity, then 50 gzip), with p50/p99 of each;
- body bytes and series count of an identity scrape.
Then both run together while `--updates` VMI changes (each VMI moves between two nodes, which
changes a series of both) are written as fast as the API server takes them (16 writers), and the
CPU seconds each consumed until it shows the last change are compared per update.
Prints one JSON line per (fleet, exporter), a table with ratios (ours / kube-state-metrics), and
draws RSS and scrape p99 against fleet size for both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import procstat  # noqa: E402
from benchmarks.bench_exposition import Objects  # noqa: E402
from tests import builders  # noqa: E402
from tests.cluster import SERVER_OWNED_METADATA, Cluster, free_port  # noqa: E402

KSM_CONFIG = ROOT / "benchmarks" / "ksm-kubevirt.yaml"
WRITERS = 16
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
SCRAPES = 100
#: Series that say a VMI is fully listed: one info series per VMI in each exporter.
INFO_SERIES = {"exporter": b"kubevirt_update_vmi_info{", "ksm": b"kubevirt_vmi_info{"}


# --- the fleet in the API server ----------------------------------------------------------------


def _strip(text: str) -> bytes:
    obj = json.loads(text)
    obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in SERVER_OWNED_METADATA}
    return json.dumps(obj, separators=(",", ":")).encode()


class Writer:
    """Writes objects to the API server over a few keep-alive HTTPS connections."""

    def __init__(self, cluster: Cluster, objects: Objects) -> None:
        self.cluster = cluster
        self.objects = objects
        self.context = ssl.create_default_context(cafile=str(cluster.ca_file))
        self.context.load_cert_chain(str(cluster.pki.admin_cert), str(cluster.pki.admin_key))

    async def _run(self, jobs: Sequence[tuple[str, str, bytes, str]]) -> float:
        """(method, path, body, content type) each, WRITERS at a time; seconds taken."""
        started = time.monotonic()
        queue: asyncio.Queue[tuple[str, str, bytes, str]] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)
        connector = aiohttp.TCPConnector(ssl=self.context, limit=WRITERS)
        async with aiohttp.ClientSession(self.cluster.server, connector=connector) as session:

            async def worker() -> None:
                while not queue.empty():
                    method, path, body, kind = queue.get_nowait()
                    while True:
                        async with session.request(
                            method, path, data=body, headers={"Content-Type": kind}
                        ) as response:
                            answer = await response.read()
                            if response.status != 429:
                                break
                        await asyncio.sleep(0.2)
                    if response.status not in (200, 201, 409):
                        raise RuntimeError(f"{method} {path}: {response.status} {answer[:300]!r}")

            await asyncio.gather(*(worker() for _ in range(WRITERS)))
        return time.monotonic() - started

    def grow(self, start: int, end: int) -> float:
        """Create VMIs (and their VMs) number `start` to `end` - 1; seconds taken."""
        jobs = []
        for i in range(start, end):
            vmi = _strip(self.objects.vmi(i))
            namespace = json.loads(vmi)["metadata"]["namespace"]
            base = f"/apis/kubevirt.io/v1/namespaces/{namespace}"
            vm = _strip(self.objects.vm(i))
            jobs.append(("POST", f"{base}/virtualmachines", vm, JSON))
            jobs.append(("POST", f"{base}/virtualmachineinstances", vmi, JSON))
        return asyncio.run(self._run(jobs))

    def namespaces(self) -> None:
        for index in range(self.objects.namespaces):
            self.cluster.ensure_namespace(f"tenant-{index:04d}")

    def updates(self, count: int, size: int, round_: int) -> float:
        """`count` VMI changes over the first `size` VMIs (each moves to another node)."""
        jobs = []
        for k in range(count):
            i = k % size
            namespace = f"tenant-{i % self.objects.namespaces:04d}"
            path = f"/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances"
            patch = json.dumps({"status": {"nodeName": f"moved-{round_}-{k // size}"}}).encode()
            jobs.append(("PATCH", f"{path}/vm-{i:07d}", patch, MERGE_PATCH))
        return asyncio.run(self._run(jobs))


# --- the two exporters --------------------------------------------------------------------------


class Peer:
    """One exporter process: ours or kube-state-metrics."""

    def __init__(self, name: str, argv: Sequence[str], port: int, workdir: Path) -> None:
        self.name = name
        self.port = port
        self.log = (workdir / f"{name}-{port}.log").open("wb")
        self.popen = subprocess.Popen(argv, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(30)
        self.log.close()

    def body(self) -> bytes:
        return asyncio.run(_get(self.port))

    def count(self, prefix: bytes, needle: bytes | None = None) -> int:
        """Lines of the body starting with `prefix` (and containing `needle`); 0 if not up."""
        try:
            body = self.body()
        except OSError:
            return 0
        lines = [line for line in body.split(b"\n") if line.startswith(prefix)]
        return len([line for line in lines if needle is None or needle in line])


async def _get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        body = _dechunk(body)
    return body


def _dechunk(data: bytes) -> bytes:
    """The body of a chunked answer; ConnectionError when it was cut short (a peer still
    starting, or restarting, may close the connection mid-body: `count` then reads 0)."""
    out: list[bytes] = []
    position = 0
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            raise ConnectionError("chunked body cut short")
        size = int(data[position:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2 : end + 2 + size])
        position = end + 2 + size + 2


def start(name: str, kubeconfig: Path, workdir: Path, ksm: Path) -> Peer:
    port = free_port()
    if name == "exporter":
        argv = [sys.executable, "-m", "exporter", "serve", "--kubeconfig", str(kubeconfig),
                "--listen", f"127.0.0.1:{port}", "--log-level", "warning"]  # fmt: skip
    else:
        argv = [str(ksm), "--kubeconfig", str(kubeconfig), "--custom-resource-state-only",
                "--custom-resource-state-config-file", str(KSM_CONFIG), "--host", "127.0.0.1",
                "--port", str(port), "--telemetry-host", "127.0.0.1",
                "--telemetry-port", str(free_port()), "--enable-gzip-encoding"]  # fmt: skip
    return Peer(name, argv, port, workdir)


def wait(condition: Callable[[], bool], what: str, timeout: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.25)


def measure(name: str, size: int, kubeconfig: Path, workdir: Path, ksm: Path) -> dict[str, Any]:
    """One exporter alone against the fleet of `size` VMIs."""
    started = time.monotonic()
    peer = start(name, kubeconfig, workdir, ksm)
    try:
        wait(lambda: peer.count(INFO_SERIES[name]) >= size, f"{name}: {size} info series")
        figures: dict[str, Any] = {
            "peer": name,
            "vmis": size,
            "first_complete_scrape_seconds": round(time.monotonic() - started, 2),
            "rss_synced": procstat.rss_bytes(peer.popen.pid),
        }
        half = SCRAPES // 2
        # CPU per scrape as well as latency: on a busy machine the latency tail is mostly
        # waiting for a core, the CPU time is not.
        cpu = procstat.cpu_seconds(peer.popen.pid)
        identity = asyncio.run(procstat.scrapes(peer.port, half))
        figures["identity_cpu_ms_per_scrape"] = (
            (procstat.cpu_seconds(peer.popen.pid) - cpu) * 1e3 / half
        )
        cpu = procstat.cpu_seconds(peer.popen.pid)
        gzipped = asyncio.run(procstat.scrapes(peer.port, SCRAPES - half, encoding="gzip"))
        figures["gzip_cpu_ms_per_scrape"] = (
            (procstat.cpu_seconds(peer.popen.pid) - cpu) * 1e3 / (SCRAPES - half)
        )
        figures["rss_scraped"] = procstat.rss_bytes(peer.popen.pid)
        figures["identity"] = {**procstat.latency_ms(identity), "bytes": identity[-1].size}
        figures["gzip"] = {**procstat.latency_ms(gzipped), "bytes": gzipped[-1].size}
        body = peer.body()
        figures["series"] = sum(1 for line in body.split(b"\n") if line and line[0] != ord("#"))
        figures["body_bytes"] = len(body)
    finally:
        peer.stop()
    return figures


def updates_cpu(
    size: int, count: int, round_: int, writer: Writer, kubeconfig: Path, workdir: Path, ksm: Path
) -> dict[str, Any]:
    """Both running; CPU seconds each used from the first change until it shows the last one."""
    peers = {name: start(name, kubeconfig, workdir, ksm) for name in ("exporter", "ksm")}
    try:
        for name, peer in peers.items():
            wait(lambda p=peer, n=name: p.count(INFO_SERIES[n]) >= size, f"{name} synced")  # type: ignore[misc]
        time.sleep(2)
        before = {name: procstat.cpu_seconds(p.popen.pid) for name, p in peers.items()}
        seconds = writer.updates(count, size, round_)
        # The last pass over the fleet leaves its VMIs on node moved-<round>-<pass>.
        last_pass = (count - 1) // size
        needle = f'node="moved-{round_}-{last_pass}"'.encode()
        expected = count - last_pass * size
        for name, peer in peers.items():
            wait(
                lambda p=peer, n=name: p.count(INFO_SERIES[n], needle) >= expected,  # type: ignore[misc]
                f"{name} shows the updates",
                timeout=900,
            )
        after = {name: procstat.cpu_seconds(p.popen.pid) for name, p in peers.items()}
    finally:
        for peer in peers.values():
            peer.stop()
    return {
        "vmis": size,
        "updates": count,
        "write_seconds": round(seconds, 1),
        "updates_per_second": round(count / seconds),
        **{f"{name}_cpu_seconds": round(after[name] - before[name], 2) for name in peers},
        **{f"{name}_cpu_ms_per_update": round((after[name] - before[name]) * 1000 / count, 3)
           for name in peers},
    }  # fmt: skip


# --- report -------------------------------------------------------------------------------------


def table(results: Sequence[Mapping[str, Any]], cpu: Sequence[Mapping[str, Any]]) -> str:
    by = {(r["peer"], r["vmis"]): r for r in results}
    sizes = sorted({n for peer, n in by if ("exporter", n) in by and ("ksm", n) in by})
    heads = [f"{n:,} VMIs: ours / KSM (ratio)" for n in sizes]
    rows = ["| Figure | " + " | ".join(heads) + " |"]
    rows.append("|---|" + "---|" * len(sizes))

    def row(label: str, get: Callable[[Mapping[str, Any]], float], unit: str = "") -> None:
        cells = []
        for size in sizes:
            ours, theirs = get(by[("exporter", size)]), get(by[("ksm", size)])
            ratio = theirs / ours if ours else float("inf")
            cells.append(f"{ours:,.1f} / {theirs:,.1f}{unit} ({ratio:.1f}x)")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")

    row("start to first complete scrape, s", lambda r: r["first_complete_scrape_seconds"])
    row("RSS after sync, MiB", lambda r: r["rss_synced"] / 2**20)
    row("RSS after 100 scrapes, MiB", lambda r: r["rss_scraped"] / 2**20)
    row("scrape p50 identity, ms", lambda r: r["identity"]["p50_ms"])
    row("scrape p99 identity, ms", lambda r: r["identity"]["p99_ms"])
    row("scrape p50 gzip, ms", lambda r: r["gzip"]["p50_ms"])
    row("scrape p99 gzip, ms", lambda r: r["gzip"]["p99_ms"])
    if all("identity_cpu_ms_per_scrape" in r for r in results):
        row("CPU per identity scrape, ms", lambda r: r["identity_cpu_ms_per_scrape"])
        row("CPU per gzip scrape, ms", lambda r: r["gzip_cpu_ms_per_scrape"])
    row("body bytes (identity), KiB", lambda r: r["body_bytes"] / 1024)
    row("gzip body, KiB", lambda r: r["gzip"]["bytes"] / 1024)
    row("series", lambda r: r["series"])
    cells = []
    updates = {c["vmis"]: c for c in cpu}
    for size in sizes:
        if size not in updates:
            cells.append("not measured")
            continue
        ours, theirs = (updates[size][f"{p}_cpu_ms_per_update"] for p in ("exporter", "ksm"))
        cells.append(f"{ours:.3f} / {theirs:.3f} ({theirs / ours:.1f}x)")
    rows.append("| CPU per VMI update, ms | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def marginal_per_vmi(results: Sequence[Mapping[str, Any]], peer: str, key: str) -> float | None:
    """RSS per VMI between the smallest and the largest fleet (the slope, fixed costs cancel)."""
    points = sorted((r["vmis"], r[key]) for r in results if r["peer"] == peer)
    if len(points) < 2:
        return None
    (n0, r0), (n1, r1) = points[0], points[-1]
    return float(r1 - r0) / float(n1 - n0)


def plot(results: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rss, p99) = plt.subplots(1, 2, figsize=(10, 4))
    for peer, label in (("exporter", "kubevirt-update-exporter"), ("ksm", "kube-state-metrics")):
        points = sorted((r["vmis"], r) for r in results if r["peer"] == peer)
        sizes = [n for n, _ in points]
        rss.plot(sizes, [r["rss_scraped"] / 2**20 for _, r in points], "o-", label=label)
        p99.plot(sizes, [r["identity"]["p99_ms"] for _, r in points], "o-", label=label)
    rss.set(title="RSS after sync and 100 scrapes", xlabel="VMIs", ylabel="MiB")
    p99.set(title="/metrics p99 (identity)", xlabel="VMIs", ylabel="ms")
    for axes in (rss, p99):
        axes.grid(True, alpha=0.3)
        axes.legend()
        axes.set_ylim(bottom=0)
        axes.set_xlim(left=0)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def ksm_binary() -> Path:
    done = subprocess.run([ROOT / "scripts" / "build-ksm"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"scripts/build-ksm failed:\n{done.stderr}")
    return Path(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fleets", type=int, nargs="+", default=[10_000, 30_000])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument(
        "--replot",
        type=Path,
        nargs="+",
        metavar="OUTPUT",
        help="no run: the table and plot from the JSON lines of earlier runs' output",
    )
    args = parser.parse_args(argv)
    if args.replot:
        lines = [json.loads(line) for path in args.replot for line in path.read_text().splitlines()
                 if line.startswith("{")]  # fmt: skip
        report(
            sorted((r for r in lines if "peer" in r), key=lambda r: r["vmis"]),
            sorted((r for r in lines if "updates" in r), key=lambda r: r["vmis"]),
            args.plot,
        )
        return 0
    # SIGTERM unwinds like Ctrl-C, so the cluster and both exporters are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    ksm = ksm_binary()
    results: list[dict[str, Any]] = []
    cpu: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="peer-ksm-") as tmp:
        workdir = Path(tmp)
        cluster = Cluster.start(workdir / "cluster")
        try:
            objects = Objects(max(args.fleets))
            writer = Writer(cluster, objects)
            writer.namespaces()
            cluster.create(builders.kubevirt())
            grown = 0
            for round_, size in enumerate(sorted(args.fleets)):
                seconds = writer.grow(grown, size)
                print(f"# created VMIs {grown}..{size - 1} with their VMs in {seconds:.0f} s",
                      flush=True)  # fmt: skip
                grown = size
                for name in ("exporter", "ksm"):
                    figures = measure(name, size, cluster.kubeconfig, workdir, ksm)
                    results.append(figures)
                    print(json.dumps(figures), flush=True)
                changes = updates_cpu(
                    size, args.updates, round_, writer, cluster.kubeconfig, workdir, ksm
                )
                cpu.append(changes)
                print(json.dumps(changes), flush=True)
                report(results, cpu, args.plot)  # after each size: a cut-short run still reports
        finally:
            cluster.stop()
    return 0


def report(
    results: Sequence[Mapping[str, Any]], cpu: Sequence[Mapping[str, Any]], path: Path | None
) -> None:
    print(table(results, cpu))
    for key in ("rss_synced", "rss_scraped"):
        ours = marginal_per_vmi(results, "exporter", key)
        theirs = marginal_per_vmi(results, "ksm", key)
        if ours is not None and theirs is not None:
            print(
                f"marginal {key} per VMI: ours {ours:.0f} B, kube-state-metrics {theirs:.0f} B "
                f"({theirs / ours:.1f}x)",
                flush=True,
            )
    if path is not None:
        plot(results, path)
        print(f"plot: {path}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

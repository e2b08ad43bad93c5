"""10,000 VMIs in a real kube-apiserver: the exporter's time to ready, RSS and scrape latency.

Usage: .venv/bin/python -m benchmarks.scale_cluster [--vmis 10000] [--scrapes 50]

Starts its own etcd + kube-apiserver (tests/cluster), creates the VMIs (fixture-sized, with VMs for
half of them and a KubeVirt CR), then measures, in the same run:
- baseline: a raw paginated list (limit 500) of every VMI over HTTPS, JSON-decoded;
- the exporter: process start to /readyz 200 (list + derive + render of every kind), its RSS
  above an idle exporter's started against an empty namespace, and /metrics round trips.
Prints figures and ratios; numbers go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests import builders
from tests.cluster import Cluster
from tests.exporter_process import ExporterProcess

NAMESPACES = ("prod", "staging", "batch", "dev")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def populate(cluster: Cluster, count: int) -> float:
    """Create `count` VMIs (half VM-owned) across NAMESPACES; returns the seconds it took."""

    def create(index: int) -> None:
        namespace = NAMESPACES[index % len(NAMESPACES)]
        name = f"vmi-{index:06d}"
        owned = index % 2 == 0
        if owned:
            cluster.create(builders.vm(name, namespace, run_strategy="Always"))
        cluster.create(
            builders.vmi(
                name,
                namespace,
                node=f"node-{index % 50:02d}",
                outdated_label=index % 4 == 0,
                owner_vm="" if owned else None,
            )
        )

    start = time.monotonic()
    for namespace in NAMESPACES:
        cluster.ensure_namespace(namespace)
    cluster.create(builders.kubevirt())
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))
    return time.monotonic() - start


def raw_list_seconds(cluster: Cluster) -> tuple[float, int]:
    start = time.monotonic()
    items, token = 0, ""
    while True:
        path = "/apis/kubevirt.io/v1/virtualmachineinstances?limit=500"
        if token:
            path += f"&continue={token}"
        status, body = cluster.request("GET", path, timeout=120)
        assert status == 200, body
        items += len(body["items"])
        token = body["metadata"].get("continue", "")
        if not token:
            return time.monotonic() - start, items


def scrape_ms(proc: ExporterProcess, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        start = time.perf_counter()
        status, _ = proc.get("/metrics")
        timings.append((time.perf_counter() - start) * 1000)
        assert status == 200
    return sorted(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vmis", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cluster = Cluster.start(workdir / "cluster")
        try:
            created = populate(cluster, args.vmis)
            print(f"created {args.vmis} VMIs (+{args.vmis // 2} VMs) in {created:.1f}s")
            sample = builders.vmi("vmi-size", "prod")
            print(f"VMI object size: {len(json.dumps(sample))} bytes of JSON")
            baseline, items = raw_list_seconds(cluster)
            print(f"baseline: raw paginated list of {items} VMIs: {baseline:.2f}s")

            cluster.ensure_namespace("empty")
            kube = ["--kubeconfig", str(cluster.kubeconfig)]
            with ExporterProcess([*kube, "--namespace", "empty"], workdir=workdir) as idle:
                idle.wait_ready()
                idle_rss = rss_kib(idle.popen.pid)

            start = time.monotonic()
            with ExporterProcess(kube, workdir=workdir) as proc:
                proc.wait_ready(timeout=600)
                ready = time.monotonic() - start
                rss = rss_kib(proc.popen.pid)
                timings = scrape_ms(proc, args.scrapes)
                body = len(proc.get("/metrics")[1])
            p50 = statistics.median(timings)
            p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
            print(f"exporter: ready in {ready:.2f}s ({ready / baseline:.1f}x the raw list)")
            print(
                f"exporter: RSS {rss / 1024:.1f} MiB, idle {idle_rss / 1024:.1f} MiB, "
                f"{(rss - idle_rss) * 1024 / args.vmis:.0f} bytes per VMI above idle"
            )
            print(f"exporter: /metrics p50 {p50:.1f} ms, p99 {p99:.1f} ms, body {body} bytes")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()

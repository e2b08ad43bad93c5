"""Exposition benchmarks at fleet scale (a script, not a test; budgets in docs/benchmarks.md).

    .venv/bin/python benchmarks/bench_exposition.py --vmis 10000 100000 [--write docs/benchmarks.md]

Each fleet size runs in a fresh process so its RSS is its own. Per size it measures:
- RSS per VMI above the idle process (/proc/self/statm), after loading VMIs and VMs through
  relists and two scrapes (caches filled);
- events/s of fixture-sized (5-20 KiB JSON) VMI MODIFIED events through json.loads -> Fleet.apply
  (projection, cache, derive, render);
- scrape round trips over real HTTP on loopback (exporter/web.py's app, identity and gzip; plus
  a handler writing `Fleet.body_chunks()` without joining them), from a client in another
  process; and the worst event-loop stall seen while serving them;
- the same series rendered by prometheus_client's generate_latest (the baseline ratio);
- the worst event-loop stall during a full relist fed page by page (500 per page, decoded off
  the loop, handed over in slices of 100 as exporter/kube/listing.py does) and during a
  control-plane change that re-derives every VMI;
- series per VMI and body size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter import web as exporter_web
from exporter.fleet import Fleet
from exporter.kube import decode_list_page
from exporter.objects import Scope
from exporter.selfmetrics import SelfMetrics
from tests import builders

PAGE = 500
SLICE = 100
#: How a list page is decoded: "kube" (exporter/kube/listing.py's own decoder: items one by one
#: with the loop running, as shipped), "page" (one json.loads of the whole body, off the loop when
#: > 1 MiB) or "items" (the benchmark's own item-by-item decoding, for comparison).
DECODE = "kube"
#: gc.freeze() after the imports and after the first lists, as `serve` does (--gc-freeze).
FREEZE = False
TEMPLATES = 64
SCRAPES = 30
EVENTS = 4000
Json = dict[str, Any]


# --- realistic objects --------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _managed_fields(rng: random.Random, disks: int) -> list[Json]:
    """metadata.managedFields as the API server keeps them (a large share of a real object)."""
    spec_fields: Json = {
        f'k:{{"name":"disk-{i}"}}': {".": {}, "f:disk": {".": {}, "f:bus": {}}, "f:name": {}}
        for i in range(disks)
    }
    return [
        {
            "apiVersion": "kubevirt.io/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:annotations": {".": {}, "f:kubevirt.io/vm-generation": {}}},
                "f:spec": {"f:domain": {"f:devices": {"f:disks": spec_fields}}},
            },
            "manager": manager,
            "operation": "Update",
            "time": f"2024-09-{rng.randint(10, 28)}T1{rng.randint(0, 9)}:4{rng.randint(0, 9)}:00Z",
        }
        for manager in ("virt-controller", "virt-handler", "kubectl-client-side-apply")
    ]


def _pad_vmi(raw: Json, rng: random.Random, disks: int, nics: int) -> None:
    """Add the bulk a real VMI carries: disks, volumes, NICs, statuses, annotations."""
    spec, status, meta = raw["spec"], raw["status"], raw["metadata"]
    devices = spec["domain"]["devices"]
    devices["disks"] = [
        {"disk": {"bus": "virtio"}, "name": f"disk-{i}", "bootOrder": i + 1} for i in range(disks)
    ]
    devices["interfaces"] = [
        {
            "bridge": {},
            "model": "virtio",
            "name": f"nic-{i}",
            "macAddress": f"02:00:00:00:00:{i:02x}",
        }
        for i in range(nics)
    ]
    devices["rng"] = {}
    spec["volumes"] = [
        {"name": f"disk-{i}", "persistentVolumeClaim": {"claimName": f"pvc-@@NAME@@-{i}"}}
        for i in range(disks - 1)
    ] + [
        {
            "name": f"disk-{disks - 1}",
            "cloudInitNoCloud": {"userData": "#cloud-config\n" + "ssh_authorized_keys: []\n" * 20},
        }
    ]
    spec["networks"] = [
        {"name": f"nic-{i}", "multus": {"networkName": f"net-{i}"}} for i in range(nics)
    ]
    status["volumeStatus"] = [
        {
            "name": f"disk-{i}",
            "target": f"vd{chr(97 + i)}",
            "persistentVolumeClaimInfo": {
                "accessModes": ["ReadWriteMany"],
                "capacity": {"storage": f"{rng.choice((30, 50, 100))}Gi"},
                "filesystemOverhead": "0.055",
                "requests": {"storage": "30Gi"},
                "volumeMode": "Block",
            },
        }
        for i in range(disks)
    ]
    status["interfaces"] = [
        {
            "infoSource": "domain, guest-agent, multus-status",
            "interfaceName": f"eth{i}",
            "ipAddress": f"10.{i}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "ipAddresses": [f"10.{i}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"],
            "mac": f"02:00:00:00:00:{i:02x}",
            "name": f"nic-{i}",
            "queueCount": 1,
        }
        for i in range(nics)
    ]
    status["currentCPUTopology"] = {"cores": rng.choice((1, 2, 4)), "sockets": 1, "threads": 1}
    status["machine"] = {"type": "pc-q35-rhel9.4.0"}
    status["memory"] = {"guestAtBoot": "4Gi", "guestCurrent": "4Gi", "guestRequested": "4Gi"}
    status["selinuxContext"] = "system_u:object_r:container_file_t:s0:c12,c34"
    status["virtualMachineRevisionName"] = "revision-start-vm-@@UID@@-1"
    meta["annotations"]["kubevirt.io/vm-generation"] = str(rng.randint(1, 9))
    meta["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(spec)
    meta["managedFields"] = _managed_fields(rng, disks)


def _vmi_template(index: int, padded: bool = True) -> str:
    """A VMI JSON with @@NS@@/@@NAME@@/@@NODE@@/@@UID@@ placeholders, 5-20 KiB once filled
    (~2.5 KiB when not `padded`: the builders' objects as they are)."""
    rng = random.Random(index)
    outdated = index % 10 < 3  # 30% outdated after an upgrade
    migratable = index % 5 != 0  # 20% not live-migratable (RWO disks)
    raw = builders.vmi(
        "@@NAME@@",
        "@@NS@@",
        uid="@@UID@@",
        node="@@NODE@@",
        launcher_image=builders.OLD_IMAGE if outdated else builders.TARGET_IMAGE,
        outdated_label=outdated,
        live_migratable=migratable,
        owner_vm="" if index % 10 else None,  # 10% standalone
        changes=("HotVCPUChange",) if index % 32 == 7 else (),
    )
    if padded:
        _pad_vmi(raw, rng, disks=1 + index % 16, nics=1 + index % 5)
    return json.dumps(raw, separators=(",", ":"))


def _vm_template(index: int) -> str:
    raw = builders.vm(
        "@@NAME@@", "@@NS@@", run_strategy=("Always", "Manual", "RerunOnFailure")[index % 3]
    )
    raw["metadata"]["uid"] = "@@UID@@"
    return json.dumps(raw, separators=(",", ":"))


class Objects:
    """Raw VMI/VM JSON for VMI number i of a fleet of n (deterministic)."""

    def __init__(self, n: int, *, padded: bool = True) -> None:
        self.n = n
        self.namespaces = max(10, n // 500)
        self.nodes = max(10, n // 100)
        self.vmis = [_vmi_template(i, padded) for i in range(TEMPLATES)]
        self.vms = [_vm_template(i) for i in range(TEMPLATES)]

    def _fill(self, template: str, i: int, uid_kind: str) -> str:
        return (
            template.replace("@@NS@@", f"tenant-{i % self.namespaces:04d}")
            .replace("@@NAME@@", f"vm-{i:07d}")
            .replace("@@NODE@@", f"worker-{i % self.nodes:04d}")
            .replace("@@UID@@", f"{i:08x}-{uid_kind}-4000-8000-{i:012x}")  # canonical UUID
        )

    def vmi(self, i: int, variant: int = 0) -> str:
        return self._fill(self.vmis[(i + variant) % TEMPLATES], i, "a1b2")

    def vm(self, i: int) -> str:
        return self._fill(self.vms[i % TEMPLATES], i, "f0e1")

    def pages(self, make: Callable[[int], str]) -> Iterator[bytes]:
        """JSON list bodies of PAGE objects each, as the API server sends them."""
        for start in range(0, self.n, PAGE):
            items = ",".join(make(i) for i in range(start, min(start + PAGE, self.n)))
            yield f'{{"kind":"List","items":[{items}]}}'.encode()


# --- event loop stall probe ---------------------------------------------------------------------


class StallProbe:
    """Wakes every `interval` and records how late it woke (the event loop's worst stall).

    `worst_on_cpu` counts only the CPU time the process used while the probe was late: on a
    machine shared with other jobs, the rest of a stall is the process waiting for a core.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.worst = 0.0
        self.worst_on_cpu = 0.0
        self._forgiven = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started, cpu = loop.time(), time.process_time()
            await asyncio.sleep(self.interval)
            late = loop.time() - started - self.interval
            if self._forgiven:
                self._forgiven = False
                continue
            self.worst = max(self.worst, late)
            self.worst_on_cpu = max(self.worst_on_cpu, min(late, time.process_time() - cpu))

    def forgive(self) -> None:
        """Do not count the current interval (the benchmark itself was busy in it)."""
        self._forgiven = True

    def start(self) -> None:
        self.worst = self.worst_on_cpu = 0.0
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.worst


class GcPauses:
    """The longest cyclic-GC collection since `reset` (a stall the loop cannot avoid)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.worst = max(self.worst, time.perf_counter() - self._started)

    def take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return worst


# --- feeding the fleet as exporter/kube/listing.py does -----------------------------------------


async def _arrive(pages: Iterator[bytes], probe: StallProbe | None) -> bytes | None:
    """The next list page, as if from the network: building it is the benchmark's work, so the
    probe first records what came before and then forgives the building."""
    if probe is not None:
        await asyncio.sleep(probe.interval * 1.5)
    page = next(pages, None)
    if probe is not None:
        probe.forgive()
    return page


async def relist(
    fleet: Fleet, resource: Any, pages: Iterator[bytes], probe: StallProbe | None = None
) -> tuple[int, float, float]:
    """One full relist: each page decoded (off the loop when > 1 MiB), applied in slices.

    Returns the objects, the total and the longest page decode in seconds.
    """
    if DECODE == "items":
        return await relist_by_items(fleet, resource, pages, probe)
    fleet.relist_begin(resource)
    objects = 0
    decode_seconds = worst_decode = 0.0
    while (page := await _arrive(pages, probe)) is not None:
        started = time.perf_counter()
        if DECODE == "kube":
            # As exporter/kube relists: each slice goes to the Fleet as soon as it is decoded.
            streamed: list[int] = []

            def hand_over(items: list[Any], streamed: list[int] = streamed) -> None:
                fleet.relist_page(resource, items)
                streamed.append(len(items))

            body = await decode_list_page(page, slice_size=SLICE, on_items=hand_over)
            objects += sum(streamed)
        elif len(page) > 1 << 20:
            body = await asyncio.to_thread(json.loads, page)
        else:
            body = json.loads(page)
        decoded = time.perf_counter() - started
        decode_seconds += decoded
        worst_decode = max(worst_decode, decoded)
        items = body["items"]
        for start in range(0, len(items), SLICE):
            fleet.relist_page(resource, items[start : start + SLICE])
            await asyncio.sleep(0)
        objects += len(items)
    fleet.relist_end(resource)
    return objects, decode_seconds, worst_decode


def _items(page: bytes) -> Iterator[Any]:
    """The objects of a compact List body, decoded one at a time."""
    text = page.decode()
    decoder = json.JSONDecoder()
    position = text.index('"items":[') + len('"items":[')
    while text[position] != "]":
        item, position = decoder.raw_decode(text, position)
        yield item
        if text[position] == ",":
            position += 1


async def relist_by_items(
    fleet: Fleet, resource: Any, pages: Iterator[bytes], probe: StallProbe | None = None
) -> tuple[int, float, float]:
    """A relist decoding item by item, a slice at a time (see DECODE)."""
    fleet.relist_begin(resource)
    objects = 0
    decode_seconds = worst_decode = 0.0
    while (page := await _arrive(pages, probe)) is not None:
        items = _items(page)
        while True:
            started = time.perf_counter()
            chunk = [item for _, item in zip(range(SLICE), items, strict=False)]
            decoded = time.perf_counter() - started
            decode_seconds += decoded
            worst_decode = max(worst_decode, decoded)
            if not chunk:
                break
            fleet.relist_page(resource, chunk)
            objects += len(chunk)
            del chunk
            await asyncio.sleep(0)
    fleet.relist_end(resource)
    return objects, decode_seconds, worst_decode


# --- HTTP ---------------------------------------------------------------------------------------

CLIENT = r"""
import json, socket, sys, time
host, port, count, encoding = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sock = socket.create_connection((host, port))
request = (f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: {encoding}\r\n\r\n").encode()
buffer = bytearray(64 << 20)
view = memoryview(buffer)
times, sizes = [], []
for _ in range(count):
    started = time.perf_counter()
    sock.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(65536)
    header, _, rest = head.partition(b"\r\n\r\n")
    fields = dict(l.split(b":", 1) for l in header.split(b"\r\n")[1:])
    length = int({k.lower(): v for k, v in fields.items()}[b"content-length"])
    view[: len(rest)] = rest
    got = len(rest)
    while got < length:
        got += sock.recv_into(view[got:length])
    times.append(time.perf_counter() - started)
    sizes.append(length)
print(json.dumps({"times": times, "size": sizes[-1]}))
"""


def _chunked_app(fleet: Fleet) -> web.Application:
    """/metrics writing Fleet.body_chunks() one by one (no per-scrape join of the body)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        chunks = fleet.body_chunks()
        response = web.StreamResponse(headers={"Content-Type": exporter_web.CONTENT_TYPE})
        response.content_length = sum(map(len, chunks))
        await response.prepare(request)
        for chunk in chunks:
            for start in range(0, len(chunk), 1 << 20):
                await response.write(memoryview(chunk)[start : start + (1 << 20)])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app


async def _scrape_round_trips(port: int, encoding: str, count: int) -> tuple[list[float], int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        "127.0.0.1",
        str(port),
        str(count),
        encoding,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    result = json.loads(out)
    return list(result["times"]), int(result["size"])


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


# --- the baseline ---------------------------------------------------------------------------------

_LINE = re.compile(r"([^{ ]+)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class _Prebuilt:
    """A prometheus_client collector returning ready metric families (collect costs nothing)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def baseline_registry(body: bytes) -> CollectorRegistry:
    """The series of `body` (non-self families) as prometheus_client metric families."""
    families: dict[str, GaugeMetricFamily] = {}
    helps: dict[str, str] = {}
    for line in body.decode().splitlines():
        if line.startswith("# HELP "):
            name, _, text = line[7:].partition(" ")
            helps[name] = text
            continue
        if line.startswith(("#", "kubevirt_update_exporter_")):
            continue
        match = _LINE.fullmatch(line)
        assert match is not None, line
        name, labels, value = match.groups()
        pairs = _LABEL.findall(labels or "")
        family = families.get(name)
        if family is None:
            family = families[name] = GaugeMetricFamily(
                name, helps[name], labels=[k for k, _ in pairs]
            )
        family.add_metric(
            [v.replace('\\"', '"').replace("\\\\", "\\") for _, v in pairs], float(value)
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Prebuilt(list(families.values())))
    return registry


def _timed(function: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


# --- one fleet size -------------------------------------------------------------------------------


async def measure(n: int, port: int) -> dict[str, Any]:
    """Every figure for a fleet of n VMIs (each with its VM, but 10% standalone)."""
    objects = Objects(n)
    selfmetrics = SelfMetrics()
    # As `serve` does: gc.freeze() once the first lists are settled (when --gc-freeze).
    fleet = Fleet(scope=Scope(), metrics=selfmetrics, on_first_sync=gc.freeze if FREEZE else None)
    settler = asyncio.create_task(fleet.run_settler())
    probe = StallProbe()
    pauses = GcPauses()
    sizes = [len(objects.vmi(i)) for i in range(TEMPLATES)]
    result: dict[str, Any] = {
        "vmis": n,
        "vmi_json_kib": [round(min(sizes) / 1024, 1), round(statistics.mean(sizes) / 1024, 1),
                         round(max(sizes) / 1024, 1)],
    }  # fmt: skip
    fleet.body_chunks()
    fleet.body_gzip()
    gc.collect()
    idle = _rss()

    # Initial lists (the exporter starting on a full cluster).
    fleet.apply("kubevirts", "ADDED", builders.kubevirt())
    probe.start()
    pauses.take()
    started = time.perf_counter()
    _, decode, worst_decode = await relist(
        fleet, "virtualmachineinstances", objects.pages(objects.vmi), probe
    )
    await relist(fleet, "virtualmachines", objects.pages(objects.vm), probe)
    for resource in ("virtualmachineinstancemigrations", "kubevirts"):
        fleet.relist_begin(resource)
        if resource == "kubevirts":
            fleet.relist_page(resource, [builders.kubevirt()])
        fleet.relist_end(resource)
    result["initial_list_seconds"] = round(time.perf_counter() - started, 2)
    result["initial_list_stall_ms"] = round(await probe.stop() * 1000, 1)
    result["initial_list_stall_on_cpu_ms"] = round(probe.worst_on_cpu * 1000, 1)
    result["initial_list_decode_seconds"] = round(decode, 2)
    result["initial_list_worst_page_decode_ms"] = round(worst_decode * 1000, 1)
    result["initial_list_worst_gc_ms"] = round(pauses.take() * 1000, 1)

    # Steady memory: after scrapes filled the body and gzip caches.
    for _ in range(2):
        fleet.body_chunks()
        fleet.body_gzip()
    gc.collect()
    steady = _rss()
    result["rss_idle_mib"] = round(idle / 2**20, 1)
    result["rss_per_vmi_bytes"] = round((steady - idle) / n)
    body = fleet.body()
    samples = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
    result["body_mib"] = round(len(body) / 2**20, 2)
    result["body_bytes_per_vmi"] = round(len(body) / n)
    result["series"] = samples
    result["series_per_vmi"] = round(samples / n, 2)
    result["gzip_mib"] = round(len(fleet.body_gzip()) / 2**20, 2)
    del body

    # In-process costs (the rebuild after a change, and warm calls).
    fleet.apply("virtualmachineinstances", "MODIFIED", json.loads(objects.vmi(0, variant=1)))
    result["rebuild_after_change_ms"] = round(_timed(fleet.body_chunks, 1)[0] * 1000, 1)
    result["warm_body_chunks_ms"] = round(
        statistics.median(_timed(fleet.body_chunks, 20)) * 1000, 2
    )
    result["warm_body_join_ms"] = round(statistics.median(_timed(fleet.body, 10)) * 1000, 1)
    fleet.apply("virtualmachineinstances", "MODIFIED", json.loads(objects.vmi(0)))
    result["gzip_after_change_ms"] = round(_timed(fleet.body_gzip, 1)[0] * 1000, 1)
    result["warm_gzip_ms"] = round(statistics.median(_timed(fleet.body_gzip, 10)) * 1000, 2)

    # Scrapes over HTTP: exporter/web.py's app, and a chunk-writing handler.
    runner = await _serve(exporter_web.build_app(exposition=fleet, lag_sink=selfmetrics), port)
    chunked = await _serve(_chunked_app(fleet), port + 1)
    # Chunks and gzip first: neither allocates the whole body per scrape, so the RSS after them
    # is the steady one; web.py's identity path joins the body on every scrape.
    for label, target, encoding in (
        ("chunked_identity", port + 1, "identity"),
        ("web_gzip", port, "gzip"),
        ("web_identity", port, "identity"),
    ):
        probe.start()
        times, size = await _scrape_round_trips(target, encoding, SCRAPES)
        stall = await probe.stop()
        result[label] = {
            "p50_ms": round(_percentile(times, 0.5) * 1000, 1),
            "p99_ms": round(_percentile(times, 0.99) * 1000, 1),
            "max_stall_ms": round(stall * 1000, 1),
            "max_stall_on_cpu_ms": round(probe.worst_on_cpu * 1000, 1),
            "bytes": size,
        }
        gc.collect()
        result[f"rss_per_vmi_after_{label}_bytes"] = round((_rss() - idle) / n)
    await runner.cleanup()
    await chunked.cleanup()

    # Events through parse -> apply -> derive -> render (each one changes what the VMI shows).
    events = [objects.vmi(i % n, variant=1 + (i // n) % 2).encode() for i in range(EVENTS)]
    renders = fleet.renders
    started = time.perf_counter()
    for event in events:
        fleet.apply("virtualmachineinstances", "MODIFIED", json.loads(event))
    elapsed = time.perf_counter() - started
    result["events_per_second"] = round(EVENTS / elapsed)
    result["event_kib_mean"] = round(statistics.mean(map(len, events)) / 1024, 1)
    result["events_rendered"] = fleet.renders - renders
    del events

    # A relist of everything again (after a 410), and a control-plane change.
    probe.start()
    pauses.take()
    started = time.perf_counter()
    _, _, worst_decode = await relist(
        fleet, "virtualmachineinstances", objects.pages(objects.vmi), probe
    )
    result["relist_seconds"] = round(time.perf_counter() - started, 2)
    result["relist_stall_ms"] = round(await probe.stop() * 1000, 1)
    result["relist_stall_on_cpu_ms"] = round(probe.worst_on_cpu * 1000, 1)
    result["relist_worst_page_decode_ms"] = round(worst_decode * 1000, 1)
    result["relist_worst_gc_ms"] = round(pauses.take() * 1000, 1)
    probe.start()
    started = time.perf_counter()
    newer = builders.deployment_config(launcher_image="quay.io/kubevirt/virt-launcher:v1.6.0")
    fleet.apply("kubevirts", "MODIFIED", builders.kubevirt(observed_deployment_config=newer))
    while fleet.pending:  # noqa: ASYNC110 - watching the settler's progress is the measurement
        await asyncio.sleep(0.001)
    result["control_plane_change_seconds"] = round(time.perf_counter() - started, 2)
    result["control_plane_change_stall_ms"] = round(await probe.stop() * 1000, 1)
    result["control_plane_change_stall_on_cpu_ms"] = round(probe.worst_on_cpu * 1000, 1)
    settler.cancel()

    # The baseline: the same series through prometheus_client's generate_latest.
    body = fleet.body()
    registry = baseline_registry(body)
    baseline = _timed(lambda: generate_latest(registry), 3)
    ours = _timed(fleet.body_chunks, 10)
    result["generate_latest_ms"] = round(statistics.median(baseline) * 1000, 1)
    result["speedup_vs_generate_latest"] = {
        "http_round_trip_p50": round(
            statistics.median(baseline) / (result["web_identity"]["p50_ms"] / 1000), 1
        ),
        "chunked_round_trip_p50": round(
            statistics.median(baseline) / (result["chunked_identity"]["p50_ms"] / 1000), 1
        ),
        "in_process_warm": round(statistics.median(baseline) / statistics.median(ours), 1),
    }
    return result


def _one(n: int, port: int, page: int, decode: str, freeze: bool) -> None:
    global PAGE, DECODE, FREEZE
    PAGE, DECODE, FREEZE = page, decode, freeze
    if freeze:
        gc.collect()
        gc.freeze()
    figures = asyncio.run(measure(n, port))
    figures["page"] = page
    figures["decode"] = decode
    figures["gc_freeze"] = freeze
    print(json.dumps(figures))


# --- driver ---------------------------------------------------------------------------------------

BUDGETS = """\
| Budget (at 100k VMIs) | Figure |
|---|---|
"""


def _report(results: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Produced by `benchmarks/bench_exposition.py` (a script, not a test). Command:",
        "",
        f"    {command}",
        "",
        f"Machine: {os.cpu_count()} cores shared with other jobs, Python "
        f"{platform.python_version()}, {platform.machine()}. Each size runs in a fresh process. "
        f"List pages of {results[0]['page']} objects, decoded by "
        + (
            "whole page (as exporter/kube/listing.py)."
            if results[0]["decode"] == "page"
            else "item (one at a time)."
        ),
        "",
        "| Figure | " + " | ".join(f"{r['vmis']:,} VMIs" for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    rows: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
        ("VMI JSON size KiB (min / mean / max)", lambda r: " / ".join(map(str, r["vmi_json_kib"]))),
        ("series per VMI", lambda r: r["series_per_vmi"]),
        ("body MiB (bytes per VMI)", lambda r: f"{r['body_mib']} ({r['body_bytes_per_vmi']})"),
        ("gzip body MiB", lambda r: r["gzip_mib"]),
        ("RSS per VMI above idle, bytes (after lists and two scrapes)",
         lambda r: r["rss_per_vmi_bytes"]),
        ("... after HTTP scrapes: chunk writer, then gzip, then web.py identity",
         lambda r: " / ".join(str(r[f"rss_per_vmi_after_{k}_bytes"]) for k in
                              ("chunked_identity", "web_gzip", "web_identity"))),
        ("scrape p50 / p99 ms, web.py identity", lambda r: _pair(r["web_identity"])),
        ("scrape p50 / p99 ms, web.py gzip", lambda r: _pair(r["web_gzip"])),
        ("scrape p50 / p99 ms, chunk writer identity", lambda r: _pair(r["chunked_identity"])),
        ("worst loop stall during scrapes ms, on CPU (web identity / gzip / chunked)",
         lambda r: " / ".join(f"{r[k]['max_stall_ms']} ({r[k]['max_stall_on_cpu_ms']})" for k in
                              ("web_identity", "web_gzip", "chunked_identity"))),
        ("generate_latest of the same series ms", lambda r: r["generate_latest_ms"]),
        ("speedup vs generate_latest (HTTP p50 web / chunked; in-process warm)",
         lambda r: "{http_round_trip_p50}x / {chunked_round_trip_p50}x; {in_process_warm}x".format(
             **r["speedup_vs_generate_latest"])),
        ("in-process rebuild after one change ms", lambda r: r["rebuild_after_change_ms"]),
        ("in-process warm body_chunks / body / gzip ms",
         lambda r: f"{r['warm_body_chunks_ms']} / {r['warm_body_join_ms']} / {r['warm_gzip_ms']}"),
        ("gzip after a change ms (worker thread)", lambda r: r["gzip_after_change_ms"]),
        ("events/s (json.loads -> apply -> derive -> render)", lambda r: r["events_per_second"]),
        ("initial lists s (of which JSON decode s)",
         lambda r: f"{r['initial_list_seconds']} ({r['initial_list_decode_seconds']})"),
        ("worst loop stall, initial lists ms: wall, on CPU (worst decode / worst GC pause)",
         lambda r: f"{r['initial_list_stall_ms']}, {r['initial_list_stall_on_cpu_ms']} "
                   f"({r['initial_list_worst_page_decode_ms']} / {r['initial_list_worst_gc_ms']})"),
        ("full relist s / worst loop stall ms: wall, on CPU (worst decode / worst GC pause)",
         lambda r: f"{r['relist_seconds']} / {r['relist_stall_ms']}, {r['relist_stall_on_cpu_ms']} "
                   f"({r['relist_worst_page_decode_ms']} / {r['relist_worst_gc_ms']})"),
        ("control-plane change s / worst loop stall ms: wall, on CPU",
         lambda r: f"{r['control_plane_change_seconds']} / {r['control_plane_change_stall_ms']}, "
                   f"{r['control_plane_change_stall_on_cpu_ms']}"),
    ]  # fmt: skip
    for title, cell in rows:
        lines.append(f"| {title} | " + " | ".join(str(cell(r)) for r in results) + " |")
    return "\n".join(lines) + "\n"


def _pair(figures: dict[str, float]) -> str:
    return f"{figures['p50_ms']} / {figures['p99_ms']}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run every size in its own process; print (and optionally write) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vmis", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--port", type=int, default=18480)
    parser.add_argument("--page", type=int, default=PAGE, help="objects per list page")
    parser.add_argument("--decode", choices=("kube", "page", "items"), default=DECODE)
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after the imports, so full collections skip the libraries' objects",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--write", type=Path, help="write the markdown table here")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args(argv)
    if args.one:
        _one(args.one, args.port, args.page, args.decode, args.gc_freeze)
        return 0
    results = []
    for n in args.vmis:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(n),
                "--port",
                str(args.port),
                "--page",
                str(args.page),
                "--decode",
                args.decode,
                *(["--gc-freeze"] if args.gc_freeze else []),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        figures = json.loads(done.stdout.splitlines()[-1])
        print(json.dumps(figures, indent=2))
        results.append(figures)
    command = "python benchmarks/bench_exposition.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:])
    )
    report = _report(results, command.strip())
    print(report)
    if args.write:
        args.write.write_text(report, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A synthetic list source for benchmarks: the kubevirt.io/v1 list and watch API, no API server.

    .venv/bin/python -m benchmarks.synthetic_source --vmis 100000 [--port 0]

Serves N VMIs of 5-18 KiB JSON (benchmarks/bench_exposition.py's objects: disks, volumes, NICs,
statuses, managedFields; 30% on the old launcher image, 20% not live-migratable, 10%
standalone; `--compact`: the same without the padding, ~2.5 KiB), each with its VM, and one
KubeVirt CR, paginated (`limit`/`continue`) as the API server pages them. Pages are built when
asked for, from 64 templates, so the source itself holds no fleet and a million VMIs cost it no
memory. Watches stay open and silent until their `timeoutSeconds`. Prints
`listening http://127.0.0.1:PORT` once it serves, then runs until SIGTERM/SIGINT. Not a test
double: only benchmarks use it (tests use tests/fakeapi.py and the real kube-apiserver).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_exposition import Objects  # noqa: E402
from tests import builders  # noqa: E402

#: The version every list reports; watches start from it and see nothing newer.
RESOURCE_VERSION = "1000"


class Source:
    """The pages of one synthetic fleet."""

    def __init__(self, vmis: int, *, padded: bool = True) -> None:
        self.objects = Objects(vmis, padded=padded)
        self.kubevirt = json.dumps(builders.kubevirt(), separators=(",", ":"))

    def items(self, resource: str, start: int, limit: int) -> tuple[list[str], int | None]:
        """The JSON of up to `limit` objects from index `start`, and the next index if any."""
        if resource == "kubevirts":
            return ([self.kubevirt] if start == 0 else []), None
        if resource not in ("virtualmachineinstances", "virtualmachines"):
            return [], None
        make = self.objects.vmi if resource == "virtualmachineinstances" else self.objects.vm
        end = min(self.objects.n, start + limit)
        return [make(i) for i in range(start, end)], (end if end < self.objects.n else None)


async def handle(request: web.Request) -> web.StreamResponse:
    source: Source = request.app[SOURCE]
    resource = request.match_info["resource"]
    if request.query.get("watch") in ("true", "1"):
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await asyncio.sleep(float(request.query.get("timeoutSeconds") or 600))
        with contextlib.suppress(ConnectionError):  # the exporter went away first
            await response.write_eof()
        return response
    start = int(request.query.get("continue") or 0)
    limit = int(request.query.get("limit") or 500)
    items, following = source.items(resource, start, limit)
    meta: dict[str, Any] = {"resourceVersion": RESOURCE_VERSION}
    if following is not None:
        meta["continue"] = str(following)
    head = json.dumps({"apiVersion": "kubevirt.io/v1", "kind": "List", "metadata": meta})
    body = f'{head[:-1]},"items":[{",".join(items)}]}}'.encode()
    return web.Response(body=body, content_type="application/json")


SOURCE = web.AppKey("source", Source)


def kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig pointing at the source (plain HTTP on loopback, a dummy token)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "synthetic", "cluster": {"server": url}}],
        "users": [{"name": "synthetic", "user": {"token": "synthetic"}}],
        "contexts": [
            {"name": "synthetic", "context": {"cluster": "synthetic", "user": "synthetic"}}
        ],
        "current-context": "synthetic",
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def serve(vmis: int, port: int, *, padded: bool) -> None:
    app = web.Application()
    app[SOURCE] = Source(vmis, padded=padded)
    app.router.add_get("/apis/kubevirt.io/v1/{resource}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"listening http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vmis", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--compact", action="store_true", help="~2.5 KiB VMIs (no disks, volumes, managedFields)"
    )
    args = parser.parse_args()
    asyncio.run(serve(args.vmis, args.port, padded=not args.compact))


if __name__ == "__main__":
    main()

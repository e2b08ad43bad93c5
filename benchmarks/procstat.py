"""What benchmarks read about a process and its /metrics: RSS, CPU time, scrape round trips.

Linux only (/proc). The scraper is a raw HTTP/1.1 client on asyncio streams, one connection per
request, so many can run at once (a burst) from one benchmark process.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` now."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """Peak resident set size of `pid` since it started or since `reset_peak_rss`."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak_rss(pid: int) -> None:
    """Start the peak (VmHWM) over from the current RSS (proc(5), clear_refs value 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value at `fraction` (0-1) of the sorted values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Scrape:
    """One GET round trip: seconds to the last byte, body bytes, HTTP status."""

    seconds: float
    size: int
    status: int


#: How long one read of a scrape may wait (a generous bound: the benchmark measures, not judges).
READ_TIMEOUT = 120.0


async def scrape(port: int, *, path: str = "/metrics", encoding: str = "identity") -> Scrape:
    """GET `path` on 127.0.0.1:`port` over a new connection and read the whole body."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: {encoding}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(request.encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        status = int(head.split(b" ", 2)[1])
        size = 0
        while chunk := await asyncio.wait_for(reader.read(1 << 20), READ_TIMEOUT):
            size += len(chunk)
    finally:
        writer.close()
    return Scrape(time.perf_counter() - started, size, status)


async def scrapes(port: int, count: int, *, encoding: str = "identity") -> list[Scrape]:
    """`count` scrapes one after the other; raises if any is not 200."""
    done = [await scrape(port, encoding=encoding) for _ in range(count)]
    bad = [s.status for s in done if s.status != 200]
    if bad:
        raise RuntimeError(f"/metrics answered {bad[:5]}")
    return done


async def burst(port: int, count: int, *, encoding: str = "gzip") -> list[Scrape]:
    """`count` scrapes started at once; raises if any is not 200."""
    done = await asyncio.gather(*(scrape(port, encoding=encoding) for _ in range(count)))
    bad = [s.status for s in done if s.status != 200]
    if bad:
        raise RuntimeError(f"/metrics answered {bad[:5]} in a burst")
    return done


def latency_ms(done: Sequence[Scrape]) -> dict[str, float]:
    """p50 and p99 of the round trips, in milliseconds."""
    seconds = [s.seconds for s in done]
    return {
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "p99_ms": round(percentile(seconds, 0.99) * 1000, 1),
    }

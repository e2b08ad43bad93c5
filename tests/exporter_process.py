"""Run the real exporter as a subprocess and read what it serves, for end-to-end tests.

Contract:
- `ExporterProcess(args)` starts `python -m exporter serve ...` on a free loopback port with JSON
  logs captured to a file (its file limit set when `file_limit` is given); `wait_ready()` polls
  `/readyz` with a generous bound; `scrape()` returns
  the parsed `/metrics`; `stop()` sends SIGTERM and returns the exit code.
- `parse_exposition(text)` turns the text format into {(name, labels): value}, ignoring comments;
  `Sample` keys let tests compare series sets order-insensitively.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.cluster import REPO, free_port

#: (metric name, sorted label pairs)
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[SeriesKey, float]

#: How long an exporter may take to become ready on a loaded 2-core machine.
READY_TIMEOUT = 120.0


def series(name: str, **labels: str) -> SeriesKey:
    """The key of one series, for lookups in parsed samples."""
    return name, tuple(sorted(labels.items()))


def _parse_labels(text: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        eq = text.index("=", i)
        key = text[i:eq].strip().lstrip(",").strip()
        assert text[eq + 1] == '"', f"label value must be quoted: {text!r}"
        j = eq + 2
        value: list[str] = []
        while text[j] != '"':
            if text[j] == "\\":
                j += 1
                value.append({"n": "\n", "\\": "\\", '"': '"'}[text[j]])
            else:
                value.append(text[j])
            j += 1
        pairs.append((key, "".join(value)))
        i = j + 1
        while i < len(text) and text[i] in ", ":
            i += 1
    return tuple(sorted(pairs))


def parse_exposition(text: str) -> Samples:
    """Parse Prometheus text format 0.0.4 into {(name, labels): value}; duplicates are an error."""
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_text, value_text = rest.rsplit("}", 1)
            key: SeriesKey = (name, _parse_labels(labels_text))
        else:
            name, value_text = line.split(" ", 1)
            key = (name, ())
        fields = value_text.split()
        assert len(fields) == 1, f"no timestamps expected: {line!r}"
        assert key not in samples, f"duplicate series: {line!r}"
        samples[key] = float(fields[0])
    return samples


def select(samples: Samples, name: str, **labels: str) -> dict[SeriesKey, float]:
    """The samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return {k: v for k, v in samples.items() if k[0] == name and wanted <= set(k[1])}


def eventually(
    probe: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.25, what: str = ""
) -> Any:
    """Call `probe` until it returns a truthy value (returned) or raise AssertionError at timeout.

    AssertionErrors and connection errors (OSError) raised by the probe count as "not yet";
    the last one is reported.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (AssertionError, OSError) as err:
            last = err
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or probe}: {last}")


class ExporterProcess:
    """`python -m exporter serve` as a subprocess on a free loopback port."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        file_limit: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.log = workdir / f"exporter-{self.port}.log"
        argv = [sys.executable, "-m", "exporter", "serve", *args]
        argv += ["--listen", f"127.0.0.1:{self.port}", "--log-format", "json"]
        environ = {**os.environ, **(env or {})}

        def limit_files() -> None:  # in the child, before exec
            if file_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
                preexec_fn=limit_files,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        """GET `path`; returns (status, body text, gunzipped when gzip-encoded).

        Connection errors raise OSError.
        """
        req = urllib.request.Request(self.url + path, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                data = resp.read()
                if resp.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                return resp.status, data.decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll /readyz until 200; fail with the log tail if the process exits or time runs out."""

        def ready() -> bool:
            assert self.alive(), f"exporter exited ({self.popen.returncode}):\n{self.log_tail()}"
            try:
                return self.get("/readyz")[0] == 200
            except OSError:
                return False

        eventually(ready, timeout=timeout, what=f"exporter /readyz\n{self.log_tail()}")

    def scrape(self) -> Samples:
        status, text = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}: {text[:500]}"
        return parse_exposition(text)

    def log_events(self) -> Iterator[dict[str, Any]]:
        """The JSON log lines written so far (non-JSON lines are skipped)."""
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(text)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, and return the exit code (killing after `timeout`)."""
        return end_process(self.popen, timeout)

    def __enter__(self) -> ExporterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def end_process(popen: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM a running process, SIGKILL it if it has not ended after `timeout`; its exit code."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout)
    return int(popen.returncode)

"""The command line: `serve` is the default; it serves a snapshot end to end and exits cleanly."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import cli
from tests import REPO
from tests.cluster import free_port
from tests.exporter_process import SeriesKey, eventually, parse_exposition, select

EXAMPLE = REPO / "examples" / "cluster-snapshot.yaml"
#: Generous: the machine is shared with a long build.
READY_TIMEOUT = 120.0


def key(metric: str, **labels: str) -> SeriesKey:
    """A parsed series' key; `name_` stands for the `name` label."""
    if "name_" in labels:
        labels["name"] = labels.pop("name_")
    return metric, tuple(sorted(labels.items()))


class Served:
    """`python -m exporter ARGS` (no subcommand) on a free loopback port, logs captured."""

    def __init__(self, args: list[str], workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "exporter.log"
        argv = [sys.executable, "-m", "exporter", *args, "--listen", f"127.0.0.1:{self.port}"]
        env = {**os.environ, "KUBEVIRT_UPDATE_EXPORTER_LOG_FORMAT": "json"}
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env
            )

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
        """(status, body, Content-Encoding) of GET `path`."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                encoding = response.headers.get("Content-Encoding", "")
                return response.status, response.read(), encoding
        except urllib.error.HTTPError as error:
            return error.code, error.read(), ""

    def ready(self) -> bool:
        if self.popen.poll() is not None:  # not an AssertionError: `eventually` must not retry
            raise RuntimeError(f"exporter exited:\n{self.log.read_text()}")
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False

    def events(self) -> list[dict[str, object]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def terminate(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=60)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    process = Served(["--snapshot", str(EXAMPLE.relative_to(REPO))], tmp_path)
    yield process
    process.kill()


def test_serving_the_example_snapshot_without_a_subcommand_then_sigterm_exits_0(
    served: Served,
) -> None:
    eventually(served.ready, timeout=READY_TIMEOUT, what="/readyz 200")
    status, body, _ = served.get("/metrics")
    assert status == 200
    samples = parse_exposition(body.decode())
    state = key(
        "kubevirt_update_vmi_update_state",
        namespace="db-prod",
        name_="postgres-primary",
        method="none",
        action="restart",
    )
    assert samples[state] == 1
    assert sum(select(samples, "kubevirt_update_outdated_vmis").values()) == 23
    converged = key("kubevirt_update_kubevirt_converged", namespace="kubevirt", name_="kubevirt")
    assert samples[converged] == 1
    synced = select(samples, "kubevirt_update_exporter_synced")
    assert len(synced) == 4 and set(synced.values()) == {1.0}

    status, compressed, encoding = served.get("/metrics", {"Accept-Encoding": "gzip"})
    assert (status, encoding) == (200, "gzip")
    assert parse_exposition(gzip.decompress(compressed).decode()).keys() == samples.keys()
    assert served.get("/healthz")[:2] == (200, b"ok\n")

    assert served.terminate() == 0
    events = [event["event"] for event in served.events()]
    assert "snapshot.loaded" in events
    assert {"event": "serve.stopping", "reason": "SIGTERM"}.items() <= next(
        e for e in served.events() if e["event"] == "serve.stopping"
    ).items()


def test_an_unreadable_snapshot_stops_the_process_with_1_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"apiVersion": "v1", "kind": "List", "items": [{"kind": "VirtualMachine"}]}')
    process = Served(["--snapshot", str(broken)], tmp_path)
    try:
        assert process.popen.wait(timeout=60) == 1
    finally:
        process.kill()
    failure = next(e for e in process.events() if e["event"] == "serve.root_task_failed")
    assert failure["task"] == "snapshot"
    assert f"{broken}: item 0: apiVersion" in str(failure["error"])


def test_settings_errors_print_every_problem_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--shard", "x", "--log-level", "loud", "--listen", "nowhere"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--shard='x'" in err
    assert "--log-level='loud'" in err
    assert "--listen='nowhere'" in err
    assert cli.main(["serve", "--total-shards", "0"]) == 2
    assert "--total-shards='0'" in capsys.readouterr().err


def test_settings_errors_from_the_environment_name_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEVIRT_UPDATE_EXPORTER_LISTEN", "::1:8080")
    assert cli.main([]) == 2
    assert "KUBEVIRT_UPDATE_EXPORTER_LISTEN='::1:8080'" in capsys.readouterr().err


def test_help_lists_the_subcommands_and_serve_help_lists_its_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for subcommand in ("serve", "report", "plan"):
        assert subcommand in out
    assert cli.main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--snapshot" in out and "--bearer-token-file" in out
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("kubevirt-update-exporter ")


def test_report_is_dispatched_to_its_module(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["report", "--snapshot", str(EXAMPLE), "-o", "json"])
    document = json.loads(capsys.readouterr().out)
    assert document["kind"] == "UpdateReport"
    assert code == 1  # the example has VMIs that need a human


def test_plan_is_dispatched_to_its_module(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["plan", "--snapshot", str(EXAMPLE)])
    assert "postgres-primary" in capsys.readouterr().out


# --- logs ------------------------------------------------------------------------------------


class Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("log_format", "tty", "json_wanted"),
    [(None, False, True), (None, True, False), ("json", True, True), ("console", False, False)],
)
def test_logs_are_json_unless_a_terminal_or_asked_otherwise(
    log_format: str | None, tty: bool, json_wanted: bool
) -> None:
    from exporter.log import wants_json

    assert wants_json(log_format, Stream(tty)) is json_wanted  # type: ignore[arg-type]  # duck


LOGGING_PROGRAM = """
import logging, structlog
from exporter.log import configure_logging
configure_logging(log_format=None, level="info")
log = structlog.get_logger("exporter.test")
log.debug("hidden.event")
log.info("watch.relisted", resource="virtualmachineinstances", objects=3)
logging.getLogger("aiohttp.server").error("Error handling request")
"""


def test_structlog_and_standard_library_lines_share_one_json_shape() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOGGING_PROGRAM],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [line["event"] for line in lines] == ["watch.relisted", "Error handling request"]
    assert lines[0]["objects"] == 3 and lines[0]["level"] == "info"
    assert lines[1]["logger"] == "aiohttp.server" and lines[1]["level"] == "error"
    assert all(line["timestamp"].endswith("Z") for line in lines)

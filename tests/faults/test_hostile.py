"""Hostile input and hard stops, tried on the real process as an attacker or an unlucky operator
would: deep nesting, duplicates, non-text header bytes, clients that vanish, trickle or stall,
SIGTERM in the middle of a long load, SIGHUP."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from exporter import snapshot
from exporter.web import SHUTDOWN_TIMEOUT
from tests import REPO
from tests.exporter_process import ExporterProcess, eventually, select

EXAMPLE = REPO / "examples" / "cluster-snapshot.yaml"
CONSOLE_SCRIPT = Path(sys.executable).with_name("kubevirt-update-exporter")
#: Allowance on a loaded 2-core machine for what follows the shutdown timeout (root tasks,
#: interpreter exit); the defects these tests catch took 10 s more and longer.
EXIT_ALLOWANCE = 8.0


def example_vmi() -> dict[str, Any]:
    items = yaml.safe_load(EXAMPLE.read_text())["items"]
    vmi: dict[str, Any] = next(i for i in items if i["kind"] == "VirtualMachineInstance")
    return vmi


def fleet_text(count: int, *, as_yaml: bool) -> str:
    """A `kubectl get -o json|yaml` List of `count` copies of the example's first VMI (and its
    KubeVirt CR), written by replicating one serialized item: fast enough for 10^4 items."""
    items = yaml.safe_load(EXAMPLE.read_text())["items"]
    kubevirt = next(i for i in items if i["kind"] == "KubeVirt")
    vmi = example_vmi()
    name = vmi["metadata"]["name"]
    if as_yaml:
        block = yaml.safe_dump([vmi], sort_keys=True)
        head = yaml.safe_dump({"apiVersion": "v1", "kind": "List"}) + "items:\n"
        head += yaml.safe_dump([kubevirt])
        needle = f"name: {name}\n"
        return head + "".join(block.replace(needle, f"name: {name}-{i}\n") for i in range(count))
    block = json.dumps(vmi)
    needle = json.dumps({"name": name})[1:-1]
    copies = (
        block.replace(needle, json.dumps({"name": f"{name}-{i}"})[1:-1]) for i in range(count)
    )
    items_text = ", ".join([json.dumps(kubevirt), *copies])
    return f'{{"apiVersion": "v1", "kind": "List", "items": [{items_text}]}}'


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=300, check=False
    )


def events_of(proc: ExporterProcess, name: str) -> list[dict[str, Any]]:
    return [event for event in proc.log_events() if event.get("event") == name]


def errors_in(proc: ExporterProcess) -> list[dict[str, Any]]:
    """Warnings and errors, less the expected one: these fleets hold VMIs only, so `serve` rightly
    warns once that the VirtualMachine, VMIM and KubeVirt kinds were not captured."""
    return [
        e
        for e in proc.log_events()
        if e.get("level") in ("error", "critical", "warning")
        and e.get("event") != "snapshot.kinds_missing"
    ]


# --- snapshots -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_snapshot_nested_too_deeply_is_exit_3_naming_the_file_and_item(
    tmp_path: Path, suffix: str
) -> None:
    vmi = example_vmi()
    path = tmp_path / f"deep{suffix}"
    if suffix == ".json":  # item 1's spec: 5,000 nested objects
        deep = json.dumps({**vmi, "spec": "DEEP"}).replace(
            '"DEEP"', '{"a": ' * 5000 + "1" + "}" * 5000
        )
        path.write_text(
            f'{{"apiVersion": "v1", "kind": "List", "items": [{json.dumps(vmi)}, {deep}]}}'
        )
    else:  # item 1's spec: 5,000 nested flow sequences
        head = {"apiVersion": "v1", "kind": "List", "items": [vmi]}
        text = yaml.safe_dump(head, sort_keys=False)
        path.write_text(text + "- kind: VirtualMachineInstance\n  spec: " + "[" * 5000 + "]" * 5000)
    done = run_cli("report", "--snapshot", str(path))
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{path}: " in done.stderr and "item 1" in done.stderr
    assert "nested" in done.stderr


def test_duplicate_keys_and_objects_are_one_warning_each_with_their_count(tmp_path: Path) -> None:
    vmi = yaml.safe_dump(example_vmi())
    indented = "".join(f"  {line}\n" for line in vmi.splitlines())
    twice_keyed = indented.replace(
        "  kind: VirtualMachineInstance\n", "  kind: Pod\n  kind: VirtualMachineInstance\n"
    )
    text = "apiVersion: v1\nkind: List\nitems:\n" + "\n".join(
        "-" + block[1:] for block in (indented, indented, twice_keyed)
    )
    path = tmp_path / "dups.yaml"
    path.write_text(text)
    done = run_cli("report", "--snapshot", str(path), "-o", "json")
    assert done.returncode in (0, 1), done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    warnings = {e["event"]: e for e in lines if "duplicate" in e["event"]}
    assert len(warnings) == 2 == len([e for e in lines if "duplicate" in e["event"]]), lines
    keys, objects = warnings["snapshot.duplicate_keys"], warnings["snapshot.duplicate_objects"]
    assert keys["count"] == 1 and f"{path}: document 0, item 2" in keys["first"], keys
    assert objects["count"] == 2 and f"{path}: document 0, item 1" in objects["first"], objects
    assert len(json.loads(done.stdout)["vmis"]) == 1


@pytest.fixture(scope="module")
def big_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 30 MB of YAML: a full load takes far longer than any stop may."""
    path = tmp_path_factory.mktemp("big") / "fleet.yaml"
    path.write_text(fleet_text(12_000, as_yaml=True))
    return path


def test_sigterm_while_a_large_yaml_snapshot_loads_stops_the_process_at_once(
    tmp_path: Path, big_yaml: Path
) -> None:
    proc = ExporterProcess(["--snapshot", str(big_yaml)], workdir=tmp_path)
    try:
        eventually(lambda: events_of(proc, "serve.listening"), timeout=60, what="listening")
        time.sleep(1.0)  # well into the parse
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.popen.wait(timeout=SHUTDOWN_TIMEOUT + EXIT_ALLOWANCE)
    finally:
        if proc.alive():
            proc.popen.kill()
            proc.popen.wait()
    assert code == 0, proc.log_tail()
    assert not events_of(proc, "snapshot.loaded"), "the stop came after the load, proving nothing"
    assert events_of(proc, "serve.stopping")[0]["reason"] == "SIGTERM"


def test_sighup_stops_serve_cleanly_with_a_line_saying_so(tmp_path: Path) -> None:
    with ExporterProcess(["--snapshot", str(EXAMPLE)], workdir=tmp_path) as proc:
        proc.wait_ready()
        proc.popen.send_signal(signal.SIGHUP)
        assert proc.popen.wait(timeout=60) == 0, proc.log_tail()
    assert events_of(proc, "serve.stopping")[0]["reason"] == "SIGHUP"


# --- HTTP --------------------------------------------------------------------------------------


def send(proc: ExporterProcess, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proc.port), timeout=30) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_authorization_bytes_that_are_not_text_get_401_and_no_error_line(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    args = ["--snapshot", str(EXAMPLE), "--bearer-token-file", str(token), "--log-level", "debug"]
    with ExporterProcess(args, workdir=tmp_path) as proc:
        proc.wait_ready()
        for value in (b"Bearer \xff\xfe", b"Bearer s3cret\xc3\xa9", b"\xff\xff s3cret"):
            request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            response = send(proc, request + b"Authorization: " + value + b"\r\n\r\n")
            assert response.startswith(b"HTTP/1.1 401 "), response[:200]
        assert proc.get("/metrics", {"Authorization": "Bearer s3cret"})[0] == 200
        refused = [e for e in events_of(proc, "http.request") if e.get("status") == 401]
        assert len(refused) == 3 and {e["level"] for e in refused} == {"debug"}
        assert not errors_in(proc), errors_in(proc)


@pytest.fixture(scope="module")
def big_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fleet whose /metrics body is larger than loopback socket buffers can hold."""
    path = tmp_path_factory.mktemp("big") / "fleet.json"
    path.write_text(fleet_text(20_000, as_yaml=False))
    return path


def stalled_scrape(proc: ExporterProcess) -> socket.socket:
    """GET /metrics from a client that reads (almost) nothing: the server's writes stall."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", proc.port))
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(1024).startswith(b"HTTP/1.1 200 ")
    return sock


def test_a_client_gone_mid_body_is_counted_and_logged_at_debug_only(
    tmp_path: Path, big_json: Path
) -> None:
    with ExporterProcess(["--snapshot", str(big_json)], workdir=tmp_path) as proc:
        proc.wait_ready()
        for _ in range(3):
            sock = stalled_scrape(proc)
            time.sleep(0.5)
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()  # with linger 0: a reset, as a timed-out scraper's kernel sends

        def counted() -> bool:
            aborted = select(proc.scrape(), "kubevirt_update_exporter_aborted_scrapes_total")
            return sum(aborted.values()) == 3

        eventually(counted, timeout=60, what="3 aborted scrapes counted")
        assert not errors_in(proc), errors_in(proc)


def test_stop_with_a_stalled_reader_is_bounded_by_the_shutdown_timeout(
    tmp_path: Path, big_json: Path
) -> None:
    proc = ExporterProcess(["--snapshot", str(big_json)], workdir=tmp_path)
    try:
        proc.wait_ready()
        sock = stalled_scrape(proc)
        time.sleep(1.0)
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.popen.wait(timeout=SHUTDOWN_TIMEOUT + EXIT_ALLOWANCE)
        sock.close()
    finally:
        if proc.alive():
            proc.popen.kill()
            proc.popen.wait()
    assert code == 0, proc.log_tail()


def test_slow_header_senders_cannot_starve_scrapes_or_flood_the_log(tmp_path: Path) -> None:
    """1,100 connections sending their request head a byte a second, file limit 1,024."""
    args = ["--snapshot", str(EXAMPLE)]
    with ExporterProcess(args, workdir=tmp_path, file_limit=1024) as proc:
        proc.wait_ready()
        stop = threading.Event()
        slow: list[socket.socket] = []
        closed_by_server = 0

        def trickle() -> None:
            nonlocal closed_by_server
            for _ in range(1100):
                try:
                    sock = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
                    sock.sendall(b"GET /metrics HTTP/1.1\r\n")
                    slow.append(sock)
                except OSError:
                    pass
            while not stop.wait(1.0):
                for sock in list(slow):
                    try:
                        sock.send(b"X")
                    except OSError:
                        slow.remove(sock)
                        sock.close()
                        closed_by_server += 1

        thread = threading.Thread(target=trickle)
        thread.start()
        try:
            time.sleep(3)
            outcomes = []
            for _ in range(4):
                try:
                    url = f"{proc.url}/metrics"
                    with urllib.request.urlopen(url, timeout=10) as response:
                        outcomes.append(response.status)
                except OSError as error:
                    outcomes.append(str(error))
                time.sleep(1)
            eventually(lambda: closed_by_server >= 1000, timeout=60, what="slow heads cut")
        finally:
            stop.set()
            thread.join()
            for sock in slow:
                sock.close()
        assert outcomes == [200] * 4
        assert proc.alive()
    lines = proc.log.read_text().splitlines()
    assert len(lines) < 100, f"{len(lines)} log lines"


def test_json_keys_and_objects_given_twice_are_counted_in_one_warning_each(
    tmp_path: Path,
) -> None:
    vmi = json.dumps(example_vmi())
    twice_keyed = vmi.replace('"kind": ', '"kind": "Pod", "kind": ', 1)
    path = tmp_path / "dups.json"
    path.write_text(f'{{"apiVersion": "v1", "kind": "List", "items": [{vmi}, {twice_keyed}]}}')
    with structlog.testing.capture_logs() as logs:
        loaded = snapshot.load(path)
    assert len(loaded["virtualmachineinstances"]) == 2
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["event"], e["count"]) for e in warnings] == [
        ("snapshot.duplicate_keys", 1),
        ("snapshot.duplicate_objects", 1),
    ]
    assert warnings[0]["first"] == f"{path}: item 1: key 'kind'"
    assert warnings[1]["first"] == f"{path}: item 1"

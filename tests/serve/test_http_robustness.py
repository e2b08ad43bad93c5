"""Odd paths, methods, headers and oversized requests never crash the exporter or bloat it.

A real exporter process (snapshot mode, no cluster) is attacked over raw sockets; after every
attack it still answers `/healthz` and serves the same `/metrics`.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cluster import REPO
from tests.exporter_process import ExporterProcess

SNAPSHOT = REPO / "examples" / "cluster-snapshot.yaml"


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    workdir = tmp_path_factory.mktemp("robustness")
    with ExporterProcess(["--snapshot", str(SNAPSHOT)], workdir=workdir) as proc:
        proc.wait_ready()
        yield proc


def raw_request(proc: ExporterProcess, payload: bytes, *, read_timeout: float = 10.0) -> bytes:
    """Send raw bytes, return whatever comes back before the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", proc.port), timeout=read_timeout) as sock:
        # The server may refuse the rest of an oversized request early.
        with contextlib.suppress(OSError):
            sock.sendall(payload)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/"), response[:200]
    return int(response.split(b" ", 2)[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def still_serving(proc: ExporterProcess) -> None:
    assert proc.alive(), proc.log_tail()
    assert proc.get("/healthz")[0] == 200
    assert proc.scrape()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(path=st.text(min_size=0, max_size=300))
def test_any_path_is_answered_without_a_server_error(exporter: ExporterProcess, path: str) -> None:
    # Any text, with what may not appear raw in a request line percent-encoded.
    target = "/" + "".join(
        c if c.isascii() and c.isprintable() and c != " " else "%2F" for c in path
    )
    response = raw_request(
        exporter, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert status_of(response) < 500


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"])
def test_methods_other_than_get_and_head_are_refused(
    exporter: ExporterProcess, method: str
) -> None:
    response = raw_request(
        exporter, f"{method} /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert status_of(response) in (400, 405, 501)
    still_serving(exporter)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x00\xff garbage \r\n\r\n", id="binary-garbage"),
        pytest.param(b"GET /metrics HTTP/9.9\r\n\r\n", id="bad-version"),
        pytest.param(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: \x7f\r\n\r\n", id="del-char"
        ),
        pytest.param(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + b"t" * 10_000
            + b"\r\n\r\n",
            id="10k-authorization",
        ),
        pytest.param(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "
            + b"a" * 200_000
            + b"\r\n\r\n",
            id="200k-header",
        ),
        pytest.param(
            b"GET /metrics HTTP/1.1\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(5000))
            + b"\r\n",
            id="5000-headers",
        ),
        pytest.param(
            b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            id="100k-path",
        ),
        pytest.param(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: -5\r\n\r\n",
            id="negative-length",
        ),
    ],
)
def test_malformed_and_oversized_requests_get_a_client_error(
    exporter: ExporterProcess, payload: bytes
) -> None:
    response = raw_request(exporter, payload)
    if response:  # closing the connection without an answer is also acceptable
        assert 400 <= status_of(response) < 500, response[:300]
    still_serving(exporter)


def test_a_huge_request_body_is_not_buffered(exporter: ExporterProcess) -> None:
    before = rss_kib(exporter.popen.pid)
    body = b"x" * (64 * 1024 * 1024)
    head = (
        "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    response = raw_request(exporter, head.encode() + body, read_timeout=30)
    if response:
        assert 400 <= status_of(response) < 500
    still_serving(exporter)
    assert rss_kib(exporter.popen.pid) - before < 32 * 1024, "a refused body was buffered"


@pytest.mark.parametrize(
    "header",
    [
        "Accept-Encoding: gzip;q=0",
        "Accept-Encoding: *",
        "Accept-Encoding: br, zstd, gzip",
        "Accept: application/openmetrics-text; version=1.0.0",
        "Authorization: Bearer " + "t" * 4_000,
    ],
)
def test_odd_headers_still_get_the_metrics(exporter: ExporterProcess, header: str) -> None:
    response = raw_request(
        exporter,
        f"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{header}\r\n\r\n".encode(),
    )
    assert status_of(response) == 200


def test_many_connections_at_once_are_served(exporter: ExporterProcess) -> None:
    sockets = [socket.create_connection(("127.0.0.1", exporter.port)) for _ in range(200)]
    try:
        assert exporter.get("/healthz")[0] == 200
    finally:
        for sock in sockets:
            sock.close()
    still_serving(exporter)

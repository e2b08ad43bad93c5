"""The HTTP endpoints and the serve loop, through aiohttp's test server and real sockets."""

from __future__ import annotations

import asyncio
import gzip
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter import __version__, web
from exporter.fleet import Fleet
from exporter.model import RESOURCES
from exporter.objects import Scope
from exporter.selfmetrics import SelfMetrics
from exporter.settings import Settings
from exporter.web import (
    CONTENT_TYPE,
    WRITE_SLICE,
    LagProbe,
    RootTasks,
    accepts_gzip,
    build_app,
)
from tests.tls import write_tls_pair

BODY = b"# HELP kubevirt_update_vmis VMIs.\n# TYPE kubevirt_update_vmis gauge\n" + b"".join(
    b'kubevirt_update_vmis{namespace="ns-%d"} %d\n' % (i, i) for i in range(2000)
)
TOKEN = "s3cret-token"


class FakeExposition:
    """A fixed body; records the threads that compress it."""

    def __init__(self, missing: list[str] | None = None) -> None:
        self.missing_now = missing or []
        self.gzip_threads: list[int] = []

    def body_chunks(self) -> list[bytes]:
        # Pieces, as the Fleet caches them per family: the response is their concatenation.
        return [BODY[:7], b"", BODY[7:]]

    def body_gzip_chunks(self) -> list[bytes]:
        self.gzip_threads.append(threading.get_ident())
        compressed = gzip.compress(BODY, 1)
        return [compressed[:5], b"", compressed[5:]]

    def missing(self) -> list[str]:
        return list(self.missing_now)


class RecordingLagSink:
    def __init__(self) -> None:
        self.lags: list[float] = []
        self.aborted = self.refused = 0

    def set_event_loop_lag(self, seconds: float) -> None:
        self.lags.append(seconds)

    def scrape_aborted(self) -> None:
        self.aborted += 1

    def connection_refused(self) -> None:
        self.refused += 1


Serve = Callable[..., Coroutine[Any, Any, TestClient[Any, Any]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start the app on aiohttp's test server; everything started is closed after the test."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**kwargs: Any) -> TestClient[Any, Any]:
        kwargs.setdefault("exposition", FakeExposition())
        kwargs.setdefault("lag_sink", RecordingLagSink())
        client: TestClient[Any, Any] = TestClient(TestServer(build_app(**kwargs)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


# --- /metrics --------------------------------------------------------------------------------


async def test_metrics_serves_the_body_as_text_format_0_0_4(serve: Serve) -> None:
    client = await serve()
    response = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Content-Encoding" not in response.headers
    assert await response.read() == BODY


async def test_metrics_is_gzip_encoded_off_the_event_loop_when_asked(serve: Serve) -> None:
    exposition = FakeExposition()
    client = await serve(exposition=exposition)
    response = await client.get(
        "/metrics", headers={"Accept-Encoding": "gzip, deflate"}, auto_decompress=False
    )
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"] == CONTENT_TYPE
    assert "Accept-Encoding" in response.headers["Vary"]
    compressed = await response.read()
    assert len(compressed) < len(BODY) // 5
    assert gzip.decompress(compressed) == BODY
    assert exposition.gzip_threads
    assert threading.get_ident() not in exposition.gzip_threads


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, identity", False),
        ("identity", False),
        ("br, deflate", False),
        ("", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_gzip_is_chosen_by_accept_encoding_and_its_q_value(header: str, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok


async def test_head_metrics_answers_headers_without_a_body(serve: Serve) -> None:
    client = await serve()
    response = await client.head("/metrics", headers={"Accept-Encoding": "identity"})
    assert response.status == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE
    assert int(response.headers["Content-Length"]) == len(BODY)
    assert await response.read() == b""


async def test_a_body_larger_than_one_write_arrives_whole_and_in_order(serve: Serve) -> None:
    class LargeExposition(FakeExposition):
        def body_chunks(self) -> list[bytes]:
            return [b"a" * (2 * WRITE_SLICE + 3), b"b" * 5, b"c" * WRITE_SLICE]

    client = await serve(exposition=LargeExposition())
    response = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    body = await response.read()
    assert int(response.headers["Content-Length"]) == len(body) == 3 * WRITE_SLICE + 8
    assert body == b"a" * (2 * WRITE_SLICE + 3) + b"b" * 5 + b"c" * WRITE_SLICE


async def test_each_scrape_reports_the_worst_lag_since_the_previous_one(serve: Serve) -> None:
    sink, probe = RecordingLagSink(), LagProbe(interval=3600)
    client = await serve(lag_sink=sink, lag_probe=probe)
    probe.worst = 0.25
    assert (await client.get("/metrics")).status == 200
    assert (await client.get("/metrics")).status == 200
    assert sink.lags == [0.25, 0.0]


# --- bearer token ----------------------------------------------------------------------------


async def test_without_the_bearer_token_metrics_is_401_with_a_challenge(serve: Serve) -> None:
    client = await serve(bearer_token=TOKEN)
    response = await client.get("/metrics")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="kubevirt-update-exporter"'
    assert BODY[:20] not in await response.read()


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer", f"Token {TOKEN}"],
)
async def test_a_wrong_bearer_token_is_401_invalid_token(serve: Serve, authorization: str) -> None:
    client = await serve(bearer_token=TOKEN)
    response = await client.get("/metrics", headers={"Authorization": authorization})
    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
async def test_the_right_bearer_token_gets_the_metrics(serve: Serve, scheme: str) -> None:
    client = await serve(bearer_token=TOKEN)
    response = await client.get("/metrics", headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.status == 200
    assert await response.read() == BODY


async def test_probes_need_no_token(serve: Serve) -> None:
    client = await serve(bearer_token=TOKEN)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200


# --- probes ----------------------------------------------------------------------------------


async def test_readyz_is_503_naming_every_kind_not_listed_yet_then_200(serve: Serve) -> None:
    fleet = Fleet(scope=Scope(), metrics=SelfMetrics())
    fleet.set_problem("virtualmachines", "forbidden: cannot list virtualmachines")
    client = await serve(exposition=fleet)
    response = await client.get("/readyz")
    assert response.status == 503
    text = await response.text()
    assert text.startswith("not ready:\n")
    for resource in RESOURCES:
        assert f"- {resource}: not listed yet" in text
    assert "forbidden: cannot list virtualmachines" in text
    for resource in RESOURCES[:-1]:
        fleet.relist_begin(resource)
        fleet.relist_end(resource)
    text = await (await client.get("/readyz")).text()
    assert text == "not ready:\n- kubevirts: not listed yet\n"
    fleet.relist_begin("kubevirts")
    fleet.relist_end("kubevirts")
    response = await client.get("/readyz")
    assert (response.status, await response.text()) == (200, "ok\n")


async def test_healthz_is_200_while_the_fleet_is_not_ready(serve: Serve) -> None:
    client = await serve(exposition=FakeExposition(missing=["kubevirts: not listed yet"]))
    assert (await client.get("/readyz")).status == 503
    response = await client.get("/healthz")
    assert (response.status, await response.text()) == (200, "ok\n")
    assert (await client.head("/healthz")).status == 200


async def test_unknown_paths_are_404_and_other_methods_405(serve: Serve) -> None:
    client = await serve()
    assert (await client.get("/index.html")).status == 404
    assert (await client.get("/metrics/extra")).status == 404
    assert (await client.post("/", data=b"x")).status == 405
    assert (await client.post("/metrics", data=b"x")).status == 405
    assert (await client.delete("/healthz")).status == 405


async def test_the_landing_page_names_the_exporter_and_links_its_endpoints(serve: Serve) -> None:
    client = await serve(bearer_token=TOKEN)
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert "<title>kubevirt-update-exporter</title>" in page
    assert f"Version {__version__}" in page
    # Relative links: they work behind a path-prefixing proxy too.
    assert re.findall(r'href="([^"]+)"', page) == ["metrics", "healthz", "readyz"]
    assert "kubevirt_update_" not in page  # no metrics without the token
    assert (await client.head("/")).status == 200


async def test_an_oversized_request_is_refused_and_the_server_keeps_serving(serve: Serve) -> None:
    client = await serve()
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Huge: " + b"a" * 100_000 + b"\r\n\r\n")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] in (b"400", b"431")
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"NOT-HTTP\r\n\r\n")
    await writer.drain()
    assert (await reader.readline()).split()[1].startswith(b"4")
    writer.close()
    assert (await client.get("/healthz")).status == 200


# --- root tasks and the lag probe ------------------------------------------------------------


async def test_root_tasks_run_with_the_app_and_are_cancelled_and_awaited_on_stop() -> None:
    events: list[str] = []

    async def feeder() -> None:
        events.append("started")
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits must complete too
            events.append("cleaned up")

    app = build_app(
        exposition=FakeExposition(), lag_sink=RecordingLagSink(), root_tasks={"feed": feeder}
    )
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        assert events == ["started"]
        tasks = app[web.ROOT_TASKS]
        assert set(tasks.tasks) == {"feed", "event-loop-lag"}
    assert events == ["started", "cleaned up"]
    assert tasks.ended is not None and not tasks.ended.done()


@pytest.mark.parametrize("outcome", ["raises", "returns"])
async def test_a_root_task_that_ends_on_its_own_resolves_ended(outcome: str) -> None:
    async def doomed() -> None:
        await asyncio.sleep(0)
        if outcome == "raises":
            raise RuntimeError("snapshot unreadable")

    async def forever() -> None:
        await asyncio.Event().wait()

    tasks = RootTasks({"doomed": doomed, "forever": forever})
    tasks.start()
    assert tasks.ended is not None
    assert await asyncio.wait_for(tasks.ended, 5) == "doomed"
    await tasks.stop()
    assert tasks.tasks == {}


async def test_the_lag_probe_measures_a_blocked_loop_and_take_starts_over() -> None:
    probe = LagProbe(interval=0.01)
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(0)  # the probe is asleep now
    time.sleep(0.05)  # noqa: ASYNC251  # blocking the event loop is the point
    await asyncio.sleep(0.02)  # the probe's overdue wake-up runs before this one ends
    task.cancel()
    worst = probe.take()
    assert worst >= 0.035  # it slept 0.01 and woke no earlier than the block ended
    assert probe.take() == 0.0


# --- serve: real sockets, TLS, signals, crash-only -------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def get_when_up(url: str, **kwargs: Any) -> tuple[int, bytes]:
    """GET `url`, retrying while the server is not listening yet."""
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url, **kwargs) as response:
                    return response.status, await response.read()
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered")


async def test_serve_over_tls_with_a_token_and_stop_with_1_when_a_root_task_ends(
    tmp_path: Path,
) -> None:
    cert, key = write_tls_pair(tmp_path)
    (token_file := tmp_path / "token").write_text(TOKEN + "\n")
    settings = Settings(
        listen_host="127.0.0.1",
        listen_port=free_port(),
        tls_cert_file=cert,
        tls_key_file=key,
        bearer_token_file=token_file,
    )
    stop_feed = asyncio.Event()

    async def feed() -> None:
        await stop_feed.wait()

    serving = asyncio.create_task(
        web.serve(
            settings=settings,
            exposition=FakeExposition(),
            lag_sink=RecordingLagSink(),
            root_tasks={"feed": feed},
        )
    )
    client_tls = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{settings.listen_port}/metrics"
    assert await get_when_up(url, ssl=client_tls) == (401, b"unauthorized\n")
    status, body = await get_when_up(
        url, ssl=client_tls, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert (status, body) == (200, BODY)
    stop_feed.set()  # the feed ends on its own: crash-only
    assert await asyncio.wait_for(serving, 30) == 1


async def test_serve_returns_0_after_sigterm() -> None:
    settings = Settings(listen_host="127.0.0.1", listen_port=free_port())
    cancelled = asyncio.Event()

    async def feed() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    serving = asyncio.create_task(
        web.serve(
            settings=settings,
            exposition=FakeExposition(),
            lag_sink=RecordingLagSink(),
            root_tasks={"feed": feed},
        )
    )
    url = f"http://127.0.0.1:{settings.listen_port}/healthz"
    assert await get_when_up(url) == (200, b"ok\n")
    signal.raise_signal(signal.SIGTERM)
    assert await asyncio.wait_for(serving, 30) == 0
    assert cancelled.is_set()


async def test_serve_returns_1_when_the_address_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(listen_host="127.0.0.1", listen_port=port)

        async def feed() -> None:
            await asyncio.Event().wait()

        result = await asyncio.wait_for(
            web.serve(
                settings=settings,
                exposition=FakeExposition(),
                lag_sink=RecordingLagSink(),
                root_tasks={"feed": feed},
            ),
            30,
        )
    assert result == 1

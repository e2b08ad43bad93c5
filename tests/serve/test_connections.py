"""The connection guard on a real loopback server: limit, eviction, 503, head deadline, drain."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import structlog

from exporter.connections import (
    ACCEPT_ERROR,
    ConnectionGuard,
    RateLimitedExceptionHandler,
    connection_limit,
)


class Echo(asyncio.Protocol):
    """Answers each chunk with "ok" and tells the guard the request started and finished."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.guard.request_started(self.transport)
        if b"hold" not in data:  # "hold" stays busy, like a long response
            self.transport.write(b"ok")
            self.guard.request_finished(self.transport)


Server = tuple[ConnectionGuard, int, list[int]]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    refused: list[int] = []
    guard = ConnectionGuard(
        limit=2, head_timeout=0.5, idle_timeout=30, on_refused=lambda: refused.append(1)
    )
    listener = await asyncio.get_running_loop().create_server(
        guard.factory(lambda: Echo(guard)), "127.0.0.1", 0
    )
    port = listener.sockets[0].getsockname()[1]
    yield guard, port, refused
    listener.close()
    await guard.drain(0.1)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def close_all(*writers: asyncio.StreamWriter) -> None:
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), 10)


async def test_beyond_the_limit_the_connection_waiting_longest_is_evicted(server: Server) -> None:
    guard, port, refused = server
    first, first_writer = await connect(port)
    _, second_writer = await connect(port)
    second_writer.write(b"hold")  # busy
    third, third_writer = await connect(port)
    third_writer.write(b"ping")
    assert await asyncio.wait_for(third.readexactly(2), 10) == b"ok"
    assert await closed(first) == b""  # the idle one made room
    assert refused == [1] and guard.open == 2
    await close_all(first_writer, second_writer, third_writer)


async def test_when_every_connection_is_busy_a_new_one_gets_503(server: Server) -> None:
    _, port, refused = server
    writers = []
    for _ in range(2):
        reader, writer = await connect(port)
        writer.write(b"hold")
        writers.append(writer)
    await asyncio.sleep(0.2)
    reader, writer = await connect(port)
    assert (await closed(reader)).startswith(b"HTTP/1.1 503 ")
    assert refused == [1]
    await close_all(*writers, writer)


async def test_a_connection_without_a_request_head_in_time_is_closed(server: Server) -> None:
    guard, port, _ = server
    reader, writer = await connect(port)
    assert await closed(reader) == b""  # after head_timeout, whatever it trickles
    assert guard.open == 0
    await close_all(writer)


async def test_drain_waits_for_busy_connections_then_aborts_them(server: Server) -> None:
    guard, port, _ = server
    idle, idle_writer = await connect(port)
    busy, busy_writer = await connect(port)
    busy_writer.write(b"hold")
    await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await guard.drain(0.3)
    assert loop.time() - started >= 0.3  # it waited for the busy one
    assert await closed(idle) == b""
    with contextlib.suppress(ConnectionResetError):  # aborted: closed, never answered
        assert await closed(busy) == b""
    await close_all(idle_writer, busy_writer)


def test_the_limit_stays_below_the_file_limit() -> None:
    assert connection_limit(ceiling=10**9, reserved=256) <= connection_limit(ceiling=10**9) < 10**9
    assert connection_limit(ceiling=5) == 5


async def test_accept_errors_are_logged_once_per_interval_with_the_count_left_out() -> None:
    handler = RateLimitedExceptionHandler(interval=3600)
    loop = asyncio.get_running_loop()
    context = {"message": f"{ACCEPT_ERROR}\nsocket: <...>", "exception": OSError(24, "EMFILE")}
    with structlog.testing.capture_logs() as logs:
        for _ in range(1000):
            handler(loop, context)
    assert [e["event"] for e in logs] == ["http.accept_failed"]
    assert handler._suppressed[ACCEPT_ERROR] == 999

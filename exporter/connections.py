"""Client connections of the HTTP server, kept within bounds whatever the clients do.

Contract:
- `ConnectionGuard.factory(make_protocol)` wraps the server's protocol factory. Every connection
  is tracked; at most `limit` are open at once (`connection_limit()`: below the process's file
  limit, so accepting can never run out of file descriptors). A new connection beyond the limit
  first evicts the connection that has waited longest for a request; when every connection is
  busy with a request, the new one is answered 503 and closed. Each refusal or eviction is counted.
- A connection must deliver a complete request head within `head_timeout` of opening, and a
  kept-alive connection its next one within `idle_timeout` of the previous response; trickling
  bytes does not extend either (slowloris). `request_started`/`request_finished` (called by the
  HTTP layer for each request, with the transport) mark a connection busy and idle.
- `drain(grace)` waits up to `grace` seconds for busy connections to finish their request,
  closing idle ones at once, then aborts whatever is left: the stop is bounded by that one timeout.
- `rate_limited_exception_handler` logs the event loop's accept errors ("Too many open files")
  at most once per `LOG_INTERVAL` with the count of those suppressed.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

log = structlog.get_logger(__name__)

#: File descriptors kept free for everything but client connections: the listening socket, the
#: API client's pool (100 connections by default), the snapshot file, logs, the event loop.
RESERVED_FILES: Final = 256
#: A ceiling whatever the file limit: Prometheus and the kubelet need a handful.
MAX_CONNECTIONS: Final = 1024
#: Seconds a new connection has to send its first request head. Real clients send it at once.
HEAD_TIMEOUT: Final = 10.0
#: Seconds a kept-alive connection may stay silent after a response. Prometheus reuses its
#: connection at every scrape; above a 60 s interval it reconnects, which costs nothing.
IDLE_TIMEOUT: Final = 75.0
#: At most one log line per kind of accept error per this many seconds.
LOG_INTERVAL: Final = 10.0

_REFUSAL: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 24\r\n\r\ntoo many connections\r\n\r\n"
)


def connection_limit(*, ceiling: int = MAX_CONNECTIONS, reserved: int = RESERVED_FILES) -> int:
    """Connections allowed at once: `ceiling`, or fewer to keep `reserved` descriptors free."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return ceiling
    return max(1, min(ceiling, soft - reserved))


class _Tracked(asyncio.Protocol):
    """The server's protocol for one connection, with the guard's bookkeeping around it."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        #: Handed to the server's protocol (a refused connection never is).
        self.admitted = False
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.admitted = self.guard.admit(self)
        if self.admitted:
            self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        if self.admitted:
            self.inner.connection_lost(exc)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.abort()


@dataclass
class ConnectionGuard:
    """See the module contract. `on_refused` is called once per refused or evicted connection."""

    limit: int = field(default_factory=connection_limit)
    head_timeout: float = HEAD_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    on_refused: Callable[[], None] = lambda: None
    #: Open connections; the waiting ones (no request in progress) in the order they began to wait.
    _waiting: dict[_Tracked, None] = field(default_factory=dict)
    _busy: set[_Tracked] = field(default_factory=set)
    _by_transport: dict[asyncio.BaseTransport, _Tracked] = field(default_factory=dict)
    _drained: asyncio.Event | None = None

    def factory(self, make_protocol: Callable[[], asyncio.Protocol]) -> Callable[[], _Tracked]:
        """The protocol factory to give `loop.create_server`."""
        return lambda: _Tracked(self, make_protocol())

    @property
    def open(self) -> int:
        return len(self._waiting) + len(self._busy)

    def admit(self, conn: _Tracked) -> bool:
        """Track `conn`, evicting or refusing as the contract says; False when refused."""
        if self.open >= self.limit:
            oldest = next(iter(self._waiting), None)
            self.on_refused()
            self._log_refusal()
            if oldest is None:
                if isinstance(conn.transport, asyncio.WriteTransport):
                    conn.transport.write(_REFUSAL)
                conn.close()
                return False
            self._untrack(oldest)
            oldest.abort()
        assert conn.transport is not None
        self._by_transport[conn.transport] = conn
        self._wait(conn, self.head_timeout)
        return True

    def forget(self, conn: _Tracked) -> None:
        """`conn` is gone."""
        self._untrack(conn)

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        """A complete request head arrived on `transport`: no deadline while it is served."""
        conn = self._by_transport.get(transport) if transport is not None else None
        if conn is not None and conn in self._waiting:
            del self._waiting[conn]
            self._cancel_deadline(conn)
            self._busy.add(conn)

    def request_finished(self, transport: asyncio.BaseTransport | None) -> None:
        """The response on `transport` is done: it may wait `idle_timeout` for the next one."""
        conn = self._by_transport.get(transport) if transport is not None else None
        if conn is not None and conn in self._busy:
            self._busy.discard(conn)
            self._wait(conn, self.idle_timeout)
            if self._drained is not None:
                conn.close()
                self._check_drained()

    async def drain(self, grace: float) -> None:
        """Close idle connections now, give busy ones up to `grace` s, then abort the rest."""
        self._drained = asyncio.Event()
        for conn in list(self._waiting):
            conn.close()
        self._check_drained()
        try:
            await asyncio.wait_for(self._drained.wait(), grace)
        except TimeoutError:
            log.warning("http.shutdown_timeout", seconds=grace, aborted=len(self._busy))
        for conn in [*self._waiting, *self._busy]:
            conn.abort()

    def _check_drained(self) -> None:
        if self._drained is not None and not self._busy:
            self._drained.set()

    def _wait(self, conn: _Tracked, timeout: float) -> None:
        self._waiting[conn] = None
        self._cancel_deadline(conn)
        conn.deadline = asyncio.get_running_loop().call_later(timeout, self._expire, conn)

    def _expire(self, conn: _Tracked) -> None:
        conn.deadline = None
        if conn in self._waiting:
            log.debug("http.request_head_timeout", open=self.open)
            self._untrack(conn)
            conn.abort()

    def _untrack(self, conn: _Tracked) -> None:
        self._cancel_deadline(conn)
        self._waiting.pop(conn, None)
        self._busy.discard(conn)
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)
        self._check_drained()

    @staticmethod
    def _cancel_deadline(conn: _Tracked) -> None:
        if conn.deadline is not None:
            conn.deadline.cancel()
            conn.deadline = None

    _last_refusal_log: float = 0.0
    _refusals_unlogged: int = 0

    def _log_refusal(self) -> None:
        self._refusals_unlogged += 1
        now = time.monotonic()
        if now - self._last_refusal_log >= LOG_INTERVAL:
            log.warning(
                "http.connection_limit",
                limit=self.limit,
                refused_or_evicted=self._refusals_unlogged,
                seconds=LOG_INTERVAL,
            )
            self._last_refusal_log, self._refusals_unlogged = now, 0


#: The event loop's message when accept() fails for want of descriptors or memory. CPython logs
#: it for each pending connection and retries at once, tens of thousands of lines a second.
ACCEPT_ERROR: Final = "socket.accept() out of system resource"


@dataclass
class RateLimitedExceptionHandler:
    """An event-loop exception handler that logs accept errors at most once per `interval`
    (with the count of those left out); every other error goes to the loop's default handler."""

    interval: float = LOG_INTERVAL
    _last: dict[str, float] = field(default_factory=dict)
    _suppressed: dict[str, int] = field(default_factory=dict)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if not message.startswith(ACCEPT_ERROR):
            loop.default_exception_handler(context)
            return
        key = ACCEPT_ERROR
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        error = context.get("exception")
        log.error(
            "http.accept_failed",
            message=key,
            error=str(error) if error is not None else None,
            suppressed_since_last=self._suppressed.pop(key, 0),
        )

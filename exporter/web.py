"""The HTTP face of the exporter: `/metrics`, `/healthz`, `/readyz`.

Contract:
- `/metrics` serves the exposition's body as `text/plain; version=0.0.4; charset=utf-8`,
  gzip-encoded when the client accepts gzip (compressed off the event loop). With a bearer token
  configured, only `Authorization: Bearer <token>` gets it (constant-time comparison); anything
  else, bytes that are not text included, is 401 with a `WWW-Authenticate` challenge. Before
  each body the worst event-loop lag seen since the previous scrape is handed to the
  self-metrics. A client that goes away mid-body is counted and logged at debug, nothing more.
- `/healthz` is 200 while the process and its event loop answer; it never depends on the API
  server or on readiness (a restart would not fix a slow API server).
- `/readyz` is 503 naming everything that keeps us unready until every kind was listed once, then
  200 "ok". Both probes and the token-free paths answer without credentials (kubelet probes).
- `/` is a small HTML landing page (name, version, links to the three endpoints), as exporters
  built on the Prometheus exporter toolkit serve; it reveals nothing a probe does not.
- GET and HEAD only; other paths 404, other methods 405; aiohttp's request limits reject oversized
  or malformed requests with a 4xx without disturbing the process. Connections are capped below
  the file limit, and must send a request head in time (`exporter.connections`); accept errors
  are logged at most once per 10 s.
- Stopping takes at most `SHUTDOWN_TIMEOUT` (10 s) plus the root tasks' cancellation: in-flight
  requests get that long to finish, then their connections are aborted.
- Root tasks (the watchers or the snapshot loader, and the lag probe) run as long as the app:
  started with it, cancelled and awaited when it stops. Crash-only: if one ends on its own, it is
  logged and `serve` returns 1 so the pod restarts; SIGTERM, SIGINT and SIGHUP (the terminal
  went away) stop cleanly and return 0.

This is the only module that imports aiohttp.web.

Longer than most modules: it is the one aiohttp.web importer, so every HTTP concern (routes,
auth, the abort-aware body writer, the connection guard's wiring, bounded shutdown) meets here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import signal
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn, Protocol

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from exporter import __version__
from exporter.connections import ConnectionGuard, RateLimitedExceptionHandler
from exporter.model import InputError
from exporter.settings import Settings, read_bearer_token, tls_server_context

log = structlog.get_logger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: How often the lag probe wakes up. 0.1 s resolves the 100 ms stall budget (docs/benchmarks.md)
#: and costs ten wake-ups a second, nothing next to a relist.
LAG_PROBE_INTERVAL: Final = 0.1
#: How long a stopping server lets in-flight requests finish before aborting their connections:
#: the one bound on a stop (the chart's terminationGracePeriodSeconds is above it). A scrape
#: takes well under a second even at 100,000 VMIs; Prometheus' default scrape timeout is 10 s.
SHUTDOWN_TIMEOUT: Final = 10.0
#: What aiohttp may still wait for after `SHUTDOWN_TIMEOUT`, per phase; by then every connection
#: has been aborted, so this is only a backstop.
_SERVER_CLEANUP_TIMEOUT: Final = 1.0

#: Bytes handed to the transport per write: bounds the copy it buffers while the client reads
#: (per connection, so 200 concurrent scrapes hold at most 200 slices; docs/benchmarks.md).
WRITE_SLICE: Final = 256 * 1024

#: A background coroutine the app runs for its whole life, created anew on each start.
RootTask = Callable[[], Coroutine[Any, Any, object]]


class Exposition(Protocol):
    """What the endpoints read (`exporter.fleet.Fleet` is one)."""

    def body_chunks(self) -> list[bytes]: ...
    def body_gzip_chunks(self) -> list[bytes]: ...
    def missing(self) -> list[str]: ...


class LagSink(Protocol):
    """Where the lag probe and the HTTP server report (`exporter.selfmetrics.SelfMetrics` is
    one)."""

    def set_event_loop_lag(self, seconds: float) -> None: ...
    def scrape_aborted(self) -> None: ...
    def connection_refused(self) -> None: ...


@dataclass
class LagProbe:
    """Measures how late the event loop wakes a sleeper; keeps the worst since the last `take`."""

    interval: float = LAG_PROBE_INTERVAL
    worst: float = 0.0

    async def run(self) -> NoReturn:
        """Sleep `interval` at a time for ever, recording how late each wake-up is."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            self.worst = max(self.worst, loop.time() - started - self.interval)

    def take(self) -> float:
        """The worst lag since the previous call (seconds), and start over."""
        worst, self.worst = self.worst, 0.0
        return worst


class RootTasks:
    """Coroutines that must run as long as the process; `ended` resolves (to the task's name) when
    one stops on its own, which is always a failure."""

    def __init__(self, factories: Mapping[str, RootTask]) -> None:
        self.factories = dict(factories)
        self.tasks: dict[str, asyncio.Task[object]] = {}
        self.ended: asyncio.Future[str] | None = None
        self.stopping = False

    def start(self) -> None:
        """Create every task on the running loop."""
        self.ended = asyncio.get_running_loop().create_future()
        self.stopping = False
        for name, factory in self.factories.items():
            task = asyncio.create_task(factory(), name=name)
            task.add_done_callback(self._on_done)
            self.tasks[name] = task

    async def stop(self) -> None:
        """Cancel every task and wait until each has finished."""
        self.stopping = True
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()

    def _on_done(self, task: asyncio.Task[object]) -> None:
        if self.stopping:
            return
        # The result first: logging is best effort and must never keep the server from stopping.
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(task.get_name())
        with contextlib.suppress(Exception):
            _log_ended(task)


def _log_ended(task: asyncio.Task[object]) -> None:
    """One error line for a root task that stopped; a traceback only for an unexpected error
    (an `InputError` names the file and the problem, and a traceback would bury it)."""
    if task.cancelled():
        log.error("serve.root_task_cancelled", task=task.get_name())
    elif isinstance(error := task.exception(), InputError):
        log.error("serve.root_task_failed", task=task.get_name(), error=str(error))
    elif error is not None:
        log.error("serve.root_task_failed", task=task.get_name(), error=str(error), exc_info=error)
    else:
        log.error("serve.root_task_ended", task=task.get_name())


@dataclass
class Endpoints:
    """What the request handlers read; one per app."""

    exposition: Exposition
    lag_sink: LagSink
    #: None leaves /metrics open.
    bearer_token: str | None = None
    lag_probe: LagProbe = field(default_factory=LagProbe)
    #: Set while `serve` runs: told when each request starts and ends.
    guard: ConnectionGuard | None = None


ENDPOINTS: Final = web.AppKey("endpoints", Endpoints)
ROOT_TASKS: Final = web.AppKey("root_tasks", RootTasks)


def build_app(
    *,
    exposition: Exposition,
    lag_sink: LagSink,
    bearer_token: str | None = None,
    root_tasks: Mapping[str, RootTask] | None = None,
    lag_probe: LagProbe | None = None,
) -> web.Application:
    """The exporter's aiohttp application; `root_tasks` run (with the lag probe) while it runs."""
    endpoints = Endpoints(exposition, lag_sink, bearer_token, lag_probe or LagProbe())
    app = web.Application(middlewares=[_mark_busy])
    app[ENDPOINTS] = endpoints
    app[ROOT_TASKS] = RootTasks({**(root_tasks or {}), "event-loop-lag": endpoints.lag_probe.run})
    app.cleanup_ctx.append(_run_root_tasks)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/", _landing)
    return app


async def _run_root_tasks(app: web.Application) -> AsyncIterator[None]:
    tasks = app[ROOT_TASKS]
    tasks.start()
    yield
    await tasks.stop()


@web.middleware
async def _mark_busy(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection guard a request head arrived (no head deadline while it is served,
    until `AccessLogger.log` says the response is written)."""
    guard = request.app[ENDPOINTS].guard
    if guard is not None:
        guard.request_started(request.transport)
    return await handler(request)


async def _metrics(request: web.Request) -> web.StreamResponse:
    endpoints = request.app[ENDPOINTS]
    if endpoints.bearer_token is not None:
        refusal = _refusal(request.headers.get("Authorization"), endpoints.bearer_token)
        if refusal is not None:
            return refusal
    endpoints.lag_sink.set_event_loop_lag(endpoints.lag_probe.take())
    headers = {"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"}
    if accepts_gzip(request.headers.get("Accept-Encoding", "")):
        loop = asyncio.get_running_loop()
        chunks = await loop.run_in_executor(None, endpoints.exposition.body_gzip_chunks)
        headers["Content-Encoding"] = "gzip"
    else:
        chunks = endpoints.exposition.body_chunks()
    response = web.StreamResponse(headers=headers)
    try:
        await _write_chunks(request, response, chunks)
    except ConnectionError as error:  # reset, broken pipe, or aiohttp's "Connection lost"
        # A scrape timeout on a large fleet does this every time: a count, not an error.
        endpoints.lag_sink.scrape_aborted()
        log.debug("http.scrape_aborted", remote=request.remote, error=str(error))
    return response


async def _write_chunks(
    request: web.Request, response: web.StreamResponse, chunks: list[bytes]
) -> None:
    """Send the cached pieces of the body as they are: joining tens of megabytes per scrape (and
    the transport copying them whole) would cost more than the scrape itself."""
    response.content_length = sum(len(chunk) for chunk in chunks)
    await response.prepare(request)
    if request.method != "HEAD":
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), WRITE_SLICE):
                await response.write(view[start : start + WRITE_SLICE])
    await response.write_eof()


def _refusal(authorization: str | None, token: str) -> web.Response | None:
    """None when `authorization` carries the bearer token, else the 401 to send (RFC 6750)."""
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip()
    # Header bytes that are not text arrive as surrogates: never equal to a token, never encoded.
    if (
        scheme.lower() == "bearer"
        and given.isascii()
        and hmac.compare_digest(given.encode(), token.encode())
    ):
        return None
    challenge = 'Bearer realm="kubevirt-update-exporter"'
    if authorization:
        challenge += ', error="invalid_token"'
    return web.Response(status=401, text="unauthorized\n", headers={"WWW-Authenticate": challenge})


def accepts_gzip(accept_encoding: str) -> bool:
    """The Accept-Encoding value allows gzip (`gzip`, `x-gzip` or `*`, with a q-value above 0)."""
    for coding in accept_encoding.split(","):
        name, *params = (part.strip() for part in coding.split(";"))
        if name.lower() not in ("gzip", "x-gzip", "*"):
            continue
        quality = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
        with contextlib.suppress(ValueError):
            if float(quality) > 0:
                return True
    return False


LANDING_PAGE: Final = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>kubevirt-update-exporter</title></head>
<body>
<h1>kubevirt-update-exporter</h1>
<p>Version {__version__}</p>
<ul>
<li><a href="metrics">/metrics</a></li>
<li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li>
</ul>
</body>
</html>
"""


async def _landing(request: web.Request) -> web.StreamResponse:
    return web.Response(text=LANDING_PAGE, content_type="text/html")


async def _healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.StreamResponse:
    missing = request.app[ENDPOINTS].exposition.missing()
    if missing:
        text = "not ready:\n" + "".join(f"- {what}\n" for what in missing)
        return web.Response(status=503, text=text)
    return web.Response(text="ok\n")


class AccessLogger(AbstractAccessLogger):
    """One debug event per request, through structlog like every other line; also tells the
    connection guard the response is written (aiohttp logs access after its last byte)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if isinstance(request, web.Request) and (guard := request.app[ENDPOINTS].guard):
            guard.request_finished(request.transport)
        log.debug(
            "http.request",
            method=request.method,
            path=request.path,
            status=response.status,
            bytes=response.body_length,
            seconds=round(time, 6),
            remote=request.remote,
        )


async def serve(
    *,
    settings: Settings,
    exposition: Exposition,
    lag_sink: LagSink,
    root_tasks: Mapping[str, RootTask],
) -> int:
    """Serve until SIGTERM/SIGINT/SIGHUP (return 0) or until a root task ends or the address
    cannot be bound (return 1). Background work is cancelled and awaited before returning; the
    stop takes at most `SHUTDOWN_TIMEOUT` plus the root tasks' cancellation."""
    token = None
    if settings.bearer_token_file is not None:
        token = read_bearer_token(settings.bearer_token_file)  # once: no file IO per scrape
    ssl_context = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        ssl_context = tls_server_context(settings.tls_cert_file, settings.tls_key_file)
    app = build_app(
        exposition=exposition, lag_sink=lag_sink, bearer_token=token, root_tasks=root_tasks
    )
    guard = app[ENDPOINTS].guard = ConnectionGuard(on_refused=lag_sink.connection_refused)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(RateLimitedExceptionHandler())
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        handle_signals=False,
        shutdown_timeout=_SERVER_CLEANUP_TIMEOUT,
        keepalive_timeout=guard.idle_timeout,
    )
    with _stop_signals() as signalled:
        await runner.setup()
        listener = None
        try:
            listener = await _listen(runner, guard, settings, ssl_context)
            if listener is None:
                return 1
            return await _until_stopped(runner, signalled)
        finally:
            if listener is not None:
                listener.close()  # no new connections from here on
            await guard.drain(SHUTDOWN_TIMEOUT)
            await runner.cleanup()


async def _listen(
    runner: web.AppRunner,
    guard: ConnectionGuard,
    settings: Settings,
    ssl_context: ssl.SSLContext | None,
) -> asyncio.Server | None:
    """Listen on the settings' address through the connection guard; None when it cannot."""
    address = f"{settings.listen_host}:{settings.listen_port}"
    assert runner.server is not None  # set by runner.setup()
    try:
        listener = await asyncio.get_running_loop().create_server(
            guard.factory(runner.server),
            settings.listen_host or None,
            settings.listen_port,
            ssl=ssl_context,
            reuse_address=True,
        )
    except OSError as error:
        log.error("serve.listen_failed", address=address, error=str(error))
        return None
    log.info(
        "serve.listening",
        address=address,
        tls=ssl_context is not None,
        connection_limit=guard.limit,
    )
    return listener


async def _until_stopped(runner: web.AppRunner, signalled: asyncio.Future[str]) -> int:
    """Wait for a stop signal (0) or for a root task to end (1)."""
    ended = runner.app[ROOT_TASKS].ended
    assert ended is not None  # set by runner.setup(), which ran the cleanup context
    await asyncio.wait([signalled, ended], return_when=asyncio.FIRST_COMPLETED)
    if signalled.done():
        log.info("serve.stopping", reason=signalled.result())
        return 0
    log.info("serve.stopping", reason=f"root task {ended.result()!r} ended")
    return 1


#: SIGHUP too: a terminal that goes away must not kill the process without a word.
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def _stop_signals() -> Iterator[asyncio.Future[str]]:
    """A future resolved with the name of the first stop signal received while inside."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[str] = loop.create_future()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, _resolve, received, signum.name)
    try:
        yield received
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _resolve(future: asyncio.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)

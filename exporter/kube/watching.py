"""Keep the Fleet in step with the API server: list, then watch, each kind for as long as we run.

Contract:
- Every watched kind has one loop that never ends on an error it can name. It lists the kind (page
  by page) into the sink as one relist (`relist_begin`, `relist_page` per slice, `relist_end`: the
  list REPLACES what the sink held of that kind), then watches from the list's resourceVersion and
  hands every ADDED/MODIFIED/DELETED object to `sink.apply`, decoded once, malformed or not (the
  sink counts and skips what it cannot read).
- Scope: one relist of a kind covers all its endpoints (`targets_for`), so a relist never drops
  another namespace's objects and the kind counts as listed only once every namespace was.
- Freshness: a BOOKMARK only advances the resourceVersion; "410 Gone" (an ERROR event or the watch
  request's status) relists; a watch that sends nothing, bookmarks included, for
  `WatchTiming.inactivity_timeout` is dropped and resumed; a watch the server ends is resumed from
  the last resourceVersion seen.
- Failures are counted (`list_result` / `watch_result`: success, error, forbidden, not_found, gone),
  logged naming the kind, and reported to the sink (`set_problem(kind, "forbidden: <the API
  server's message>")`); they are retried with capped, fully jittered exponential backoff
  (429 waits its Retry-After), for ever; the next success clears the problem. What the sink
  already knows is never dropped because of an error.
- The event loop stays responsive: list pages reach the sink in small slices with a yield between
  them, and one line is logged per relist, none per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import aiohttp
import structlog

from exporter.kube.api import ApiServer, Target, WatchSettings, connect, targets_for
from exporter.kube.errors import (
    ApiFailure,
    Backoff,
    Gone,
    StreamBroken,
    failure_of,
    failure_of_status,
    unreachable,
)
from exporter.kube.listing import Json, list_pages
from exporter.model import OBJECT_EVENTS, RESOURCES, Resource
from exporter.settings import WatchTiming

log = structlog.get_logger("exporter.kube")

#: How a delay is waited (injectable so tests can record delays instead of spending them).
Sleep = Callable[[float], Awaitable[None]]


class Sink(Protocol):
    """What the watch loops need of the Fleet (exporter.fleet.Fleet satisfies it)."""

    def apply(self, resource: Resource, event_type: str, raw: Mapping[str, Any]) -> None: ...
    def relist_begin(self, resource: Resource) -> None: ...
    def relist_page(self, resource: Resource, raws: Sequence[Mapping[str, Any]]) -> object:
        """Apply one page of a relist (what it returns is not read here)."""

    def relist_end(self, resource: Resource) -> None: ...
    def set_problem(self, resource: Resource, problem: str | None) -> None: ...


class WatchMetrics(Protocol):
    """What the watch loops count (exporter.selfmetrics.SelfMetrics satisfies it)."""

    def list_result(self, resource: Resource, result: str) -> None: ...
    def watch_result(self, resource: Resource, result: str) -> None: ...
    def watch_event(self, resource: Resource, event_type: str) -> None: ...


async def _json_lines(content: aiohttp.StreamReader) -> AsyncGenerator[bytes, None]:
    """The newline-terminated lines of a watch stream, whatever their length. A last line without
    its newline means the connection was cut mid-event: raises StreamBroken."""
    pending: list[bytes] = []
    async for chunk in content.iter_any():
        start = 0
        end = chunk.find(b"\n", start)
        while end >= 0:
            if pending:
                pending.append(chunk[start:end])
                line = b"".join(pending)
                pending.clear()
            else:
                line = chunk[start:end]
            if line.strip():
                yield line
            start = end + 1
            end = chunk.find(b"\n", start)
        if start < len(chunk):
            pending.append(chunk[start:])
    if any(part.strip() for part in pending):
        raise StreamBroken(f"stream cut mid-event ({sum(map(len, pending))} bytes unterminated)")


@dataclass
class _Position:
    """Where a watch resumes: the last resourceVersion seen, and since when it streams."""

    version: str
    streaming_since: float | None = None

    def advance(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            version = meta.get("resourceVersion")
            if isinstance(version, str) and version:
                self.version = version

    def healthy(self, after: float) -> bool:
        """The last stream delivered for at least `after` seconds."""
        since = self.streaming_since
        return since is not None and time.monotonic() - since >= after


class _Problems:
    """The kind's current problem: the latest failure of each endpoint, until it succeeds."""

    def __init__(self, resource: Resource, sink: Sink) -> None:
        self._resource = resource
        self._sink = sink
        self._by_target: dict[Target, str] = {}
        self._published: str | None = None

    def set(self, target: Target, problem: str | None) -> None:
        if problem is None:
            self._by_target.pop(target, None)
        else:
            self._by_target[target] = problem
        combined = "; ".join(self._by_target[t] for t in sorted(self._by_target, key=_order))
        published = combined or None
        if published != self._published:
            self._published = published
            self._sink.set_problem(self._resource, published)


def _order(target: Target) -> str:
    return target.namespace or ""


class KindWatch:
    """Keeps one kind (all its endpoints) listed and watched into the sink, for ever."""

    def __init__(
        self,
        *,
        resource: Resource,
        targets: Sequence[Target],
        api: ApiServer,
        sink: Sink,
        metrics: WatchMetrics,
        timing: WatchTiming,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.resource = resource
        self.targets = tuple(targets)
        self._api = api
        self._sink = sink
        self._metrics = metrics
        self._timing = timing
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._problems = _Problems(resource, sink)

    def _backoff(self) -> Backoff:
        return Backoff(self._timing.backoff_initial, self._timing.backoff_max, self._rng)

    async def run(self) -> NoReturn:
        """Relist, watch every endpoint until one reports 410, relist again; never returns."""
        backoff = self._backoff()
        while True:
            positions = await self._relist()
            watching_since = time.monotonic()
            try:
                async with asyncio.TaskGroup() as group:
                    for target in self.targets:
                        group.create_task(self._watch(target, positions[target]))
            except* Gone as gone:
                for exc in gone.exceptions:
                    self._metrics.watch_result(self.resource, "gone")
                    log.info("watch.gone", resource=self.resource, reason=str(exc))
            if time.monotonic() - watching_since >= self._timing.healthy_after:
                backoff.reset()
                continue
            await self._sleep(backoff.next_delay())

    async def _relist(self) -> dict[Target, _Position]:
        """List every endpoint into the sink as one relist; retries until it succeeds."""
        backoff = self._backoff()
        while True:
            try:
                return await self._relist_once()
            except _ListFailed as failed:
                failure, target = failed.failure, failed.target
                self._metrics.list_result(self.resource, failure.result)
                self._problems.set(target, failure.problem)
                delay = (
                    failure.retry_after if failure.retry_after is not None else backoff.next_delay()
                )
                log.error(
                    "watch.list_failed",
                    resource=self.resource,
                    namespace=target.where,
                    result=failure.result,
                    problem=failure.problem,
                    retry_in=round(delay, 3),
                )
                await self._sleep(delay)

    async def _relist_once(self) -> dict[Target, _Position]:
        started = time.monotonic()
        self._sink.relist_begin(self.resource)
        positions: dict[Target, _Position] = {}
        objects = 0

        def hand_over(items: list[Json]) -> None:
            nonlocal objects
            self._sink.relist_page(self.resource, items)
            objects += len(items)

        for target in self.targets:
            version = ""
            try:
                async for _, page_version in list_pages(
                    self._api, target, timing=self._timing, on_items=hand_over
                ):
                    version = page_version
            except ApiFailure as failure:
                raise _ListFailed(failure, target) from failure
            self._metrics.list_result(self.resource, "success")
            self._problems.set(target, None)
            positions[target] = _Position(version)
        self._sink.relist_end(self.resource)
        log.info(
            "watch.relisted",
            resource=self.resource,
            objects=objects,
            duration=round(time.monotonic() - started, 3),
            namespaces=[t.where for t in self.targets],
        )
        return positions

    async def _watch(self, target: Target, position: _Position) -> NoReturn:
        """Watch one endpoint, resuming after every end or failure, until 410 (raises Gone)."""
        backoff = self._backoff()
        while True:
            retry_after = await self._watch_once(target, position)
            if position.healthy(self._timing.healthy_after):
                backoff.reset()
                delay = 0.0
            else:
                delay = backoff.next_delay()
            await self._sleep(retry_after if retry_after is not None else delay)

    async def _watch_once(self, target: Target, position: _Position) -> float | None:
        """One watch request, counted and logged; returns the Retry-After the server asked for."""
        position.streaming_since = None
        try:
            await self._stream(target, position)
        except ApiFailure as failure:
            self._metrics.watch_result(self.resource, failure.result)
            self._problems.set(target, failure.problem)
            self._log_watch_failure(target, failure)
            return failure.retry_after
        except StreamBroken as broken:
            self._metrics.watch_result(self.resource, "error")
            log.warning(
                "watch.interrupted",
                resource=self.resource,
                namespace=target.where,
                reason=str(broken),
                resource_version=position.version,
            )
        else:
            log.debug("watch.ended", resource=self.resource, namespace=target.where)
        return None

    def _log_watch_failure(self, target: Target, failure: ApiFailure) -> None:
        emit = log.error if failure.result in ("forbidden", "not_found") else log.warning
        emit(
            "watch.failed",
            resource=self.resource,
            namespace=target.where,
            result=failure.result,
            problem=failure.problem,
        )

    async def _stream(self, target: Target, position: _Position) -> None:
        """One watch request from `position`; returns when the server ends it cleanly."""
        low, high = self._timing.watch_timeout_seconds
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", position.version),
            ("timeoutSeconds", str(self._rng.randint(low, high))),
        ]
        if target.label_selector:
            query.append(("labelSelector", target.label_selector))
        timeout = aiohttp.ClientTimeout(sock_connect=self._timing.connect_timeout)
        try:
            response = await self._api.get(target.path, query, request_timeout=timeout)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise unreachable(exc, target) from exc
        async with response:
            if response.status != 200:
                failure = await failure_of(response, target, self._timing)
                if failure.result == "gone":
                    raise Gone(f"{target.where}: {failure.problem}")
                raise failure
            self._metrics.watch_result(self.resource, "success")
            self._problems.set(target, None)
            position.streaming_since = time.monotonic()
            await self._consume(response, target, position)

    async def _consume(
        self, response: aiohttp.ClientResponse, target: Target, position: _Position
    ) -> None:
        inactivity = self._timing.inactivity_timeout
        loop = asyncio.get_running_loop()
        lines = _json_lines(response.content)
        try:
            async with asyncio.timeout(inactivity) as watchdog, contextlib.aclosing(lines):
                handled = 0
                async for line in lines:
                    watchdog.reschedule(loop.time() + inactivity)
                    self._dispatch(line, target, position)
                    handled += 1
                    if handled % 100 == 0:
                        await asyncio.sleep(0)
        except TimeoutError as exc:
            raise StreamBroken(f"no event or bookmark for {inactivity:g} s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise StreamBroken(f"connection lost: {str(exc) or type(exc).__name__}") from exc

    def _dispatch(self, line: bytes, target: Target, position: _Position) -> None:
        """Apply one watch event line (decoded once)."""
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise StreamBroken(f"undecodable watch event: {exc}") from exc
        event_type = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if not isinstance(event_type, str) or not isinstance(obj, dict):
            log.warning("watch.unexpected_event", resource=self.resource, line=line[:200])
            return
        if event_type in OBJECT_EVENTS:
            self._metrics.watch_event(self.resource, event_type)
            self._sink.apply(self.resource, event_type, obj)
            position.advance(obj)
        elif event_type == "BOOKMARK":
            self._metrics.watch_event(self.resource, event_type)
            position.advance(obj)
        elif event_type == "ERROR":
            self._metrics.watch_event(self.resource, event_type)
            code = obj.get("code")
            failure = failure_of_status(
                code if isinstance(code, int) else 500, _message_of(obj), target
            )
            if failure.result == "gone":
                raise Gone(f"{target.where}: {failure.problem}")
            raise failure
        else:
            log.warning("watch.unknown_event_type", resource=self.resource, type=event_type)


def _message_of(status: Mapping[str, Any]) -> str:
    message = status.get("message")
    return message if isinstance(message, str) else ""


class _ListFailed(Exception):
    """A list of one endpoint failed (the relist as a whole is abandoned and retried)."""

    def __init__(self, failure: ApiFailure, target: Target) -> None:
        super().__init__(failure.problem)
        self.failure = failure
        self.target = target


async def run_watchers(
    *,
    settings: WatchSettings,
    fleet: Sink,
    metrics: WatchMetrics,
    timing: WatchTiming | None = None,
    sleep: Sleep = asyncio.sleep,
) -> NoReturn:
    """List and watch the four kinds into `fleet` for ever (ends only by cancellation, or by
    KubeError when the configuration cannot be loaded at all)."""
    timing = timing or WatchTiming()
    async with connect(kubeconfig=settings.kubeconfig) as api, asyncio.TaskGroup() as group:
        for resource in RESOURCES:
            kind = KindWatch(
                resource=resource,
                targets=targets_for(resource, settings),
                api=api,
                sink=fleet,
                metrics=metrics,
                timing=timing,
                sleep=sleep,
            )
            group.create_task(kind.run(), name=f"watch {resource}")
    raise AssertionError("the watch loops never end")  # pragma: no cover

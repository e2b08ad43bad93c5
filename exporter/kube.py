"""Keep the Fleet in step with the Kubernetes API server: list, then watch, for as long as we run.

Contract:
- Every watched kind has one loop that never ends on an error it can name. It lists the kind (page
  by page, `limit` objects at a time) into the sink as one relist (`relist_begin`, `relist_page`
  per slice, `relist_end`: the list REPLACES what the sink held of that kind), then watches from
  the list's resourceVersion and hands every ADDED/MODIFIED/DELETED object to `sink.apply`, decoded
  once, malformed or not (the sink counts and skips what it cannot read).
- Scope: with namespaces, VMIs, VMs and VMIMs are listed and watched per namespace; one relist of a
  kind covers all its namespaces, so a relist never drops another namespace's objects and the kind
  counts as listed only once every namespace was. The label selector goes to the server for VMIs
  only. The KubeVirt CR is always read cluster-wide.
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
- `list_all` is the one-shot read of every kind for `report` and `plan`; it raises `KubeError`.

This is the only module that imports kubernetes_asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, Protocol, cast

import aiohttp
import structlog
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from exporter import __version__
from exporter.model import RESOURCES, Resource

log = structlog.get_logger("exporter.kube")

#: A decoded JSON object as the API server sends it.
Json = dict[str, Any]
#: The `result` label of `list_total` / `watch_total`.
Result = Literal["success", "error", "forbidden", "not_found", "gone"]
#: How a delay is waited (injectable so tests can record delays instead of spending them).
Sleep = Callable[[float], Awaitable[None]]

GROUP_VERSION = "kubevirt.io/v1"
#: The kinds that `--namespace` limits (the KubeVirt CR is always read cluster-wide).
NAMESPACED_BY_SCOPE: frozenset[Resource] = frozenset(
    {"virtualmachineinstances", "virtualmachines", "virtualmachineinstancemigrations"}
)
OBJECT_EVENTS = frozenset({"ADDED", "MODIFIED", "DELETED"})


class Sink(Protocol):
    """What the watch loops need of the Fleet (exporter.fleet.Fleet satisfies it)."""

    def apply(self, resource: Resource, event_type: str, raw: Mapping[str, Any]) -> None: ...
    def relist_begin(self, resource: Resource) -> None: ...
    def relist_page(self, resource: Resource, raws: Sequence[Mapping[str, Any]]) -> None: ...
    def relist_end(self, resource: Resource) -> None: ...
    def set_problem(self, resource: Resource, problem: str | None) -> None: ...


class WatchMetrics(Protocol):
    """What the watch loops count (exporter.selfmetrics.SelfMetrics satisfies it)."""

    def list_result(self, resource: Resource, result: str) -> None: ...
    def watch_result(self, resource: Resource, result: str) -> None: ...
    def watch_event(self, resource: Resource, event_type: str) -> None: ...


class WatchSettings(Protocol):
    """The settings this module reads (exporter.settings.Settings satisfies it)."""

    @property
    def kubeconfig(self) -> str | os.PathLike[str] | None: ...
    @property
    def namespaces(self) -> Sequence[str]: ...
    @property
    def label_selector(self) -> str | None: ...


@dataclass(frozen=True)
class WatchTiming:
    """The timing of lists and watches; the defaults are for production, tests shrink them."""

    #: Objects per list page: client-go's pager default
    #: (kubernetes/kubernetes:staging/src/k8s.io/client-go/tools/pager/pager.go); a page of 500
    #: VMIs (5-20 KiB each) is at most ~10 MB of JSON.
    page_size: int = 500
    #: Objects handed to `relist_page` at once, with a yield to the event loop between slices.
    slice_size: int = 100
    #: Bounds of the server-side `timeoutSeconds` of a watch, drawn at random per request so that
    #: watches do not all end and reconnect together; 5-10 min as client-go's reflector
    #: (kubernetes/kubernetes:staging/src/k8s.io/client-go/tools/cache/reflector.go).
    watch_timeout_seconds: tuple[int, int] = (300, 600)
    #: A watch silent this long (no event, no bookmark) is considered dead and resumed. The API
    #: server's watch cache sends a bookmark every minute to watchers that allow bookmarks
    #: (kubernetes/kubernetes:staging/src/k8s.io/apiserver/pkg/storage/cacher/cacher.go,
    #: `defaultBookmarkFrequency`), so 150 s is two missed bookmarks plus margin; a server that
    #: sends none only costs a cheap resume every 150 s on a quiet kind.
    inactivity_timeout: float = 150.0
    #: First reconnect delay bound; doubles per failure up to `backoff_max` (full jitter:
    #: the actual delay is uniform in [0, bound]). 0.8 s and 30 s are the reflector's backoff
    #: (same file as above).
    backoff_initial: float = 0.8
    backoff_max: float = 30.0
    #: A watch connected this long counts as healthy: its end resets the backoff.
    healthy_after: float = 60.0
    #: TCP/TLS connect timeout of every request.
    connect_timeout: float = 10.0
    #: A list page that takes longer than this between two reads of the socket is abandoned.
    list_read_timeout: float = 60.0
    #: Upper bound on an honoured Retry-After, so a bogus header cannot park a kind for hours.
    retry_after_max: float = 300.0


class KubeError(RuntimeError):
    """The cluster could not be configured, reached or read; str() names the kind and problem."""


@dataclass
class Backoff:
    """Capped exponential backoff, full jitter: delay n is uniform in [0, min(max, initial*2^n)]."""

    initial: float
    maximum: float
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call doubles the bound until the cap."""
        bound = min(self.maximum, self.initial * 2.0 ** min(self.attempt, 64))
        self.attempt += 1
        return self.rng.uniform(0.0, bound)

    def reset(self) -> None:
        """Start again from the initial bound (after a healthy period)."""
        self.attempt = 0


@dataclass(frozen=True)
class Target:
    """One list/watch endpoint: a kind, cluster-wide (namespace None) or in one namespace."""

    resource: Resource
    namespace: str | None = None
    label_selector: str | None = None

    @property
    def path(self) -> str:
        """The REST path of the collection."""
        where = f"namespaces/{self.namespace}/" if self.namespace is not None else ""
        return f"/apis/{GROUP_VERSION}/{where}{self.resource}"

    @property
    def where(self) -> str:
        """For logs and problems: the namespace, or "cluster-wide"."""
        return self.namespace if self.namespace is not None else "cluster-wide"


def targets_for(resource: Resource, settings: WatchSettings) -> tuple[Target, ...]:
    """The endpoints that together make up `resource` in the settings' scope (SPEC section 2)."""
    selector = (settings.label_selector or None) if resource == "virtualmachineinstances" else None
    if resource in NAMESPACED_BY_SCOPE and settings.namespaces:
        return tuple(Target(resource, ns, selector) for ns in sorted(set(settings.namespaces)))
    return (Target(resource, None, selector),)


# -- talking to the API server ---------------------------------------------------------------


class ApiServer:
    """Authenticated GETs against the API server, answered with the raw aiohttp response."""

    def __init__(self, api_client: k8s_client.ApiClient) -> None:
        self._client = api_client

    async def get(
        self, path: str, query: Sequence[tuple[str, str]], *, request_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """GET `path`; the caller owns (and must release) the response, whatever its status."""
        response = await self._client.call_api(
            path,
            "GET",
            query_params=list(query),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=request_timeout,
        )
        return cast(aiohttp.ClientResponse, response)


@contextlib.asynccontextmanager
async def connect(*, kubeconfig: str | os.PathLike[str] | None) -> AsyncIterator[ApiServer]:
    """An API server client: `kubeconfig` when given, else in-cluster when running in a pod, else
    $KUBECONFIG or ~/.kube/config. Raises KubeError naming the source when it cannot be loaded."""
    configuration = k8s_client.Configuration()
    loader = await _load_configuration(configuration, kubeconfig)
    refresher = asyncio.create_task(_refresh_credentials(loader, configuration))
    try:
        async with k8s_client.ApiClient(configuration) as api_client:
            api_client.user_agent = f"kubevirt-update-exporter/{__version__}"
            yield ApiServer(api_client)
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher


async def _load_configuration(
    configuration: k8s_client.Configuration, kubeconfig: str | os.PathLike[str] | None
) -> Any:
    """Fill `configuration`; returns the kubeconfig loader (None in-cluster)."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            # kubernetes_asyncio leaves this function unannotated.
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except Exception as exc:  # any failure here is a configuration problem worth naming
            raise KubeError(f"in-cluster configuration: {exc}") from exc
        return None
    source = _kubeconfig_source(kubeconfig)
    try:
        return await k8s_config.load_kube_config(
            config_file=source, client_configuration=configuration, persist_config=False
        )
    except Exception as exc:  # any failure here is a configuration problem worth naming
        raise KubeError(f"kubeconfig {source}: {exc}") from exc


def _kubeconfig_source(kubeconfig: str | os.PathLike[str] | None) -> str:
    """The kubeconfig to read: the flag, else $KUBECONFIG (may list several files), else the
    default file."""
    if kubeconfig is not None:
        return os.fspath(kubeconfig)
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


async def _refresh_credentials(loader: Any, configuration: k8s_client.Configuration) -> None:
    """Renew exec-plugin / gcp tokens of a kubeconfig user (a no-op for other credentials)."""
    # refresh_token() renews only exec-plugin and gcp credentials (and fails on a loader without
    # a user); there is nothing to renew for certificates and static tokens.
    user = getattr(loader, "_user", None) or {}
    if getattr(loader, "provider", None) != "gcp" and "exec" not in user:
        return
    try:
        await k8s_config.refresh_token(loader, client_configuration=configuration)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the next request's 401 will be reported; keep running
        log.error("kube.credentials_refresh_failed", error=str(exc))


class _ApiFailure(Exception):
    """A request the API server refused or that did not reach it."""

    def __init__(self, result: Result, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.result: Result = result
        self.problem = problem
        self.retry_after = retry_after


class _Gone(Exception):
    """410: the resourceVersion (or continue token) is too old; only a fresh list helps."""


class _StreamBroken(Exception):
    """The watch stream ended abnormally (cut, undecodable, silent); resume from the last one."""


_RESULT_BY_STATUS: Mapping[int, Result] = {403: "forbidden", 404: "not_found", 410: "gone"}
_PROBLEM_WORD: Mapping[Result, str] = {
    "forbidden": "forbidden",
    "not_found": "not found",
    "gone": "gone",
    "error": "error",
    "success": "",
}


async def _failure_of(
    response: aiohttp.ClientResponse, target: Target, timing: WatchTiming
) -> _ApiFailure:
    """The failure a non-200 response stands for, with the API server's own message."""
    try:
        text = (await response.read()).decode("utf-8", errors="replace")
    except (aiohttp.ClientError, OSError, TimeoutError):
        text = ""
    return _failure_of_status(
        response.status, _status_message(text), target, retry_after=_retry_after(response, timing)
    )


def _failure_of_status(
    code: int, message: str, target: Target, *, retry_after: float | None = None
) -> _ApiFailure:
    result = _RESULT_BY_STATUS.get(code, "error")
    if not message:
        message = f"HTTP {code}"
    if result == "not_found":
        message = (
            f"the API server does not serve {GROUP_VERSION} {target.resource} "
            f"in {target.where} (is KubeVirt installed?): {message}"
        )
    elif result == "error":
        message = f"HTTP {code} for {target.resource} in {target.where}: {message}"
    return _ApiFailure(result, f"{_PROBLEM_WORD[result]}: {message}", retry_after)


def _status_message(text: str) -> str:
    """The `message` of a Kubernetes Status body, else the start of the body."""
    with contextlib.suppress(ValueError):
        body = json.loads(text)
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return str(body["message"])
    return text.strip()[:300]


def _retry_after(response: aiohttp.ClientResponse, timing: WatchTiming) -> float | None:
    """The Retry-After header in seconds (the API server sends delta-seconds), bounded."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), timing.retry_after_max)


def _unreachable(exc: BaseException, target: Target) -> _ApiFailure:
    detail = str(exc) or type(exc).__name__
    return _ApiFailure("error", f"error: cannot read {target.resource} in {target.where}: {detail}")


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, position: int) -> int:
    """The position after any JSON whitespace at `position`."""
    match = _WHITESPACE.match(text, position)
    return match.end() if match else position


async def decode_list_page(
    data: bytes,
    *,
    slice_size: int,
    on_items: Callable[[list[Any]], None] | None = None,
) -> Any:
    """Decode a List page with the event loop running: its `items` one by one, yielding to the loop
    every `slice_size` items. (One `json.loads` of a 500-VMI page holds the GIL for ~100 ms, in a
    worker thread too.) With `on_items`, each slice is handed over as soon as it is decoded and
    not kept (the returned body's `items` is then empty), so only one slice of raw objects is
    alive at a time. Anything that is not an object with an `items` array is decoded whole."""
    text = data.decode()
    decoder = json.JSONDecoder()
    position = _skip(text, 0)
    if not text.startswith("{", position):
        return json.loads(text)
    body: dict[str, Any] = {}
    position = _skip(text, position + 1)
    while not text.startswith("}", position):
        key, position = decoder.raw_decode(text, position)
        position = _skip(text, position)
        if not text.startswith(":", position):
            raise ValueError(f"expected ':' at {position}")
        position = _skip(text, position + 1)
        if key == "items" and text.startswith("[", position):
            items: list[Any] = []
            position = await _decode_items(
                decoder, text, position, slice_size, on_items or items.extend
            )
            body[key] = items
        else:
            body[key], position = decoder.raw_decode(text, position)
        position = _skip(text, position)
        if text.startswith(",", position):
            position = _skip(text, position + 1)
        elif not text.startswith("}", position):
            raise ValueError(f"expected ',' or '}}' at {position}")
    return body


async def _decode_items(
    decoder: json.JSONDecoder,
    text: str,
    position: int,
    slice_size: int,
    hand_over: Callable[[list[Any]], None],
) -> int:
    """Decode the array at `position` element by element, handing over slices; returns the
    position after it."""
    batch: list[Any] = []
    position = _skip(text, position + 1)
    while not text.startswith("]", position):
        item, position = decoder.raw_decode(text, position)
        batch.append(item)
        if len(batch) == slice_size:
            hand_over(batch)
            batch = []
            await asyncio.sleep(0)
        position = _skip(text, position)
        if text.startswith(",", position):
            position = _skip(text, position + 1)
        elif not text.startswith("]", position):
            raise ValueError(f"expected ',' or ']' at {position}")
    if batch:
        hand_over(batch)
    return position + 1


async def _list_pages(
    api: ApiServer,
    target: Target,
    *,
    timing: WatchTiming,
    on_items: Callable[[list[Json]], None] | None = None,
) -> AsyncIterator[tuple[list[Json], str]]:
    """Yield (objects, list resourceVersion) page by page; raises _ApiFailure (gone: the continue
    token expired, list again from the start). With `on_items`, objects are handed to it in
    slices as they are decoded instead (see `decode_list_page`) and the yielded lists are empty."""
    token = ""
    timeout = aiohttp.ClientTimeout(
        sock_connect=timing.connect_timeout, sock_read=timing.list_read_timeout
    )
    while True:
        query = [("limit", str(timing.page_size))]
        if target.label_selector:
            query.append(("labelSelector", target.label_selector))
        if token:
            query.append(("continue", token))
        try:
            async with await api.get(target.path, query, request_timeout=timeout) as response:
                if response.status != 200:
                    raise await _failure_of(response, target, timing)
                data = await response.read()
            body = await decode_list_page(
                data,
                slice_size=max(1, timing.slice_size),
                on_items=None if on_items is None else _objects_to(on_items, target),
            )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise _unreachable(exc, target) from exc
        items, version, token = _list_page_parts(body, target)
        yield items, version
        if not token:
            return


def _objects_of(raw_items: list[Any], target: Target) -> list[Json]:
    """The objects of a list's items; anything else is skipped with a warning."""
    items = [item for item in raw_items if isinstance(item, dict)]
    if len(items) != len(raw_items):
        log.warning(
            "watch.list_skipped_non_objects",
            resource=target.resource,
            namespace=target.where,
            skipped=len(raw_items) - len(items),
        )
    return items


def _objects_to(
    receiver: Callable[[list[Json]], None], target: Target
) -> Callable[[list[Any]], None]:
    """`receiver`, fed only the objects of each slice of items."""
    return lambda raw_items: receiver(_objects_of(raw_items, target))


def _list_page_parts(body: Any, target: Target) -> tuple[list[Json], str, str]:
    """(objects, resourceVersion, continue token) of one List page."""
    if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
        raise _ApiFailure(
            "error", f"error: {target.resource} in {target.where}: the list is not a List object"
        )
    items = _objects_of(body.get("items") or [], target)
    meta = body.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    version = meta.get("resourceVersion")
    token = meta.get("continue")
    return (
        items,
        version if isinstance(version, str) else "",
        token if isinstance(token, str) else "",
    )


async def _json_lines(content: aiohttp.StreamReader) -> AsyncGenerator[bytes, None]:
    """The newline-terminated lines of a watch stream, whatever their length. A last line without
    its newline means the connection was cut mid-event: raises _StreamBroken."""
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
        raise _StreamBroken(f"stream cut mid-event ({sum(map(len, pending))} bytes unterminated)")


# -- the per-kind loop ------------------------------------------------------------------------


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
            except* _Gone as gone:
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
                async for _, page_version in _list_pages(
                    self._api, target, timing=self._timing, on_items=hand_over
                ):
                    version = page_version
            except _ApiFailure as failure:
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
        """Watch one endpoint, resuming after every end or failure, until 410 (raises _Gone)."""
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
        except _ApiFailure as failure:
            self._metrics.watch_result(self.resource, failure.result)
            self._problems.set(target, failure.problem)
            self._log_watch_failure(target, failure)
            return failure.retry_after
        except _StreamBroken as broken:
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

    def _log_watch_failure(self, target: Target, failure: _ApiFailure) -> None:
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
            raise _unreachable(exc, target) from exc
        async with response:
            if response.status != 200:
                failure = await _failure_of(response, target, self._timing)
                if failure.result == "gone":
                    raise _Gone(f"{target.where}: {failure.problem}")
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
            raise _StreamBroken(f"no event or bookmark for {inactivity:g} s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise _StreamBroken(f"connection lost: {str(exc) or type(exc).__name__}") from exc

    def _dispatch(self, line: bytes, target: Target, position: _Position) -> None:
        """Apply one watch event line (decoded once)."""
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise _StreamBroken(f"undecodable watch event: {exc}") from exc
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
            failure = _failure_of_status(
                code if isinstance(code, int) else 500, _message_of(obj), target
            )
            if failure.result == "gone":
                raise _Gone(f"{target.where}: {failure.problem}")
            raise failure
        else:
            log.warning("watch.unknown_event_type", resource=self.resource, type=event_type)


def _message_of(status: Mapping[str, Any]) -> str:
    message = status.get("message")
    return message if isinstance(message, str) else ""


class _ListFailed(Exception):
    """A list of one endpoint failed (the relist as a whole is abandoned and retried)."""

    def __init__(self, failure: _ApiFailure, target: Target) -> None:
        super().__init__(failure.problem)
        self.failure = failure
        self.target = target


# -- entry points -----------------------------------------------------------------------------


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


async def list_all(
    *,
    settings: WatchSettings,
    progress: Callable[[Resource, int], None] | None = None,
    timing: WatchTiming | None = None,
) -> dict[Resource, list[Json]]:
    """Every object of the four kinds within the settings' scope, read once (for report/plan).
    `progress(kind, objects so far)` is called after each page. Raises KubeError on any failure."""
    timing = timing or WatchTiming()
    listed: dict[Resource, list[Json]] = {}
    async with connect(kubeconfig=settings.kubeconfig) as api:
        for resource in RESOURCES:
            objects: list[Json] = []
            for target in targets_for(resource, settings):
                try:
                    async for items, _version in _list_pages(api, target, timing=timing):
                        objects.extend(items)
                        if progress is not None:
                            progress(resource, len(objects))
                except _ApiFailure as failure:
                    raise KubeError(f"{resource}: {failure.problem}") from failure
            listed[resource] = objects
    return listed

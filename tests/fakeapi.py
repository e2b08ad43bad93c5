"""An in-memory stand-in for the kubevirt.io/v1 part of a kube-apiserver, with faults on demand.

Contract (tests only; the real API server is exercised by the `cluster` tests):
- Serves list (`limit`/`continue` pagination, equality label selectors) and watch
  (`resourceVersion`, `timeoutSeconds`, ERROR 410 for versions older than the last compaction)
  for the four kinds, cluster-wide and per namespace, as JSON lines like the real server.
- `put` / `delete` change the store and notify open watches; `quietly=True` changes it without
  any event reaching anyone (the "events lost while disconnected" gap), as after a compaction.
- Faults: `fail(...)` answers the next matching requests with an error Status (and headers such as
  Retry-After); `expire` sends ERROR 410 to open watches; `stall` makes open watches go silent
  while their connections stay open; `cut` sends half of an event line and drops the connection;
  `end_watches` ends open watches cleanly; `bookmark` sends a BOOKMARK; `emit` sends any event.
- Every request is recorded (`requests`), with its query and Authorization header.
- `RecordingSink` models the Fleet contract (a relist REPLACES a kind; apply upserts/deletes by
  namespace/name and records whatever it is given, malformed or not); `RecordingMetrics` and
  `RecordingSleep` record what the watch loops count and how long they ask to wait.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from aiohttp import web

from exporter.model import RESOURCES, Resource

Json = dict[str, Any]
Verb = Literal["list", "watch"]


@dataclass
class Fault:
    """Answer the next `times` matching requests with HTTP `status` and a Status body."""

    verb: Verb
    resource: str
    status: int
    message: str = "injected fault"
    headers: Mapping[str, str] = field(default_factory=dict)
    times: int = 1
    #: Only requests for this namespace ("" = cluster-wide requests); None matches any.
    namespace: str | None = None
    #: Only list requests that carry a continue token (a later page).
    continued: bool = False

    def matches(
        self, verb: Verb, resource: str, namespace: str | None, query: Mapping[str, str]
    ) -> bool:
        return (
            self.times > 0
            and self.verb == verb
            and self.resource == resource
            and (self.namespace is None or self.namespace == (namespace or ""))
            and (not self.continued or "continue" in query)
        )


@dataclass(frozen=True)
class Recorded:
    """One request the fake answered."""

    verb: Verb
    resource: str
    namespace: str | None
    query: Mapping[str, str]
    authorization: str


_CLOSE = b""
_STALL = b"\x00stall"


@dataclass
class _Watcher:
    resource: str
    namespace: str | None
    selector: str
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    def wants(self, resource: str, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        return (
            resource == self.resource
            and (self.namespace is None or meta.get("namespace") == self.namespace)
            and selector_matches(self.selector, meta.get("labels"))
        )


def selector_matches(selector: str, labels: Any) -> bool:
    """Equality-based selectors only (`a=b`, `a!=b`, `a`), enough for the tests."""
    labels = labels if isinstance(labels, dict) else {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key.rstrip("=")) != value.lstrip("="):
                return False
        elif term not in labels:
            return False
    return True


def status_body(code: int, message: str) -> Json:
    reason = {403: "Forbidden", 404: "NotFound", 410: "Expired", 429: "TooManyRequests"}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason.get(code, "InternalError"),
        "code": code,
    }


def line(event_type: str, obj: Mapping[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": obj}).encode() + b"\n"


class FakeApi:
    """See the module docstring. Use `async with FakeApi() as api:`; `api.url` is its address."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str, str], Json]] = {r: {} for r in RESOURCES}
        self.version = 1000
        #: (resourceVersion, resource, event type, object) of every notified change.
        self.history: list[tuple[int, str, str, Json]] = []
        #: Watches from a version below this get ERROR 410 (set by `compact`).
        self.oldest = 0
        self.faults: list[Fault] = []
        self.requests: list[Recorded] = []
        self._watchers: list[_Watcher] = []
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeApi:
        app = web.Application()
        app.router.add_get("/apis/kubevirt.io/v1/{resource}", self._handle)
        app.router.add_get("/apis/kubevirt.io/v1/namespaces/{namespace}/{resource}", self._handle)
        # Handlers end when their client goes away, so `watching()` counts only live watches.
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(_CLOSE)
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(self, path: Path, token: str = "fake-token") -> Path:
        """A kubeconfig pointing at this fake with a bearer token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # -- the store ----------------------------------------------------------------------------

    def put(self, resource: str, obj: Mapping[str, Any], *, quietly: bool = False) -> Json:
        """Create or replace an object (ADDED or MODIFIED); returns the stored copy."""
        stored = copy.deepcopy(dict(obj))
        meta = stored.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.setdefault("uid", str(uuid.uuid4()))
        key = (meta["namespace"], meta["name"])
        event_type = "MODIFIED" if key in self.objects[resource] else "ADDED"
        self.version += 1
        meta["resourceVersion"] = str(self.version)
        self.objects[resource][key] = stored
        if not quietly:
            self._notify(resource, event_type, stored)
        return copy.deepcopy(stored)

    def delete(self, resource: str, namespace: str, name: str, *, quietly: bool = False) -> None:
        """Delete an object (DELETED carries its last state at a new resourceVersion)."""
        gone = self.objects[resource].pop((namespace, name))
        self.version += 1
        gone["metadata"]["resourceVersion"] = str(self.version)
        if not quietly:
            self._notify(resource, "DELETED", gone)

    def compact(self) -> None:
        """Forget the event history: watches resuming from any earlier version get 410."""
        self.history.clear()
        self.oldest = self.version

    def _notify(self, resource: str, event_type: str, obj: Json) -> None:
        self.history.append((self.version, resource, event_type, copy.deepcopy(obj)))
        for watcher in self._watchers:
            if watcher.wants(resource, obj):
                watcher.queue.put_nowait(line(event_type, obj))

    # -- faults -------------------------------------------------------------------------------

    def fail(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def _open(self, resource: str, namespace: str | None = None) -> list[_Watcher]:
        return [
            w
            for w in self._watchers
            if w.resource == resource and (namespace is None or w.namespace == namespace)
        ]

    def watching(self, resource: str, namespace: str | None = None) -> int:
        """How many watches of `resource` are open."""
        return len(self._open(resource, namespace))

    def emit(self, resource: str, event_type: str, obj: Any) -> None:
        """Send any event (even a malformed object) to the open watches of `resource`."""
        for watcher in self._open(resource):
            watcher.queue.put_nowait(line(event_type, obj))

    def bookmark(self, resource: str) -> None:
        """Send a BOOKMARK at the current resourceVersion to the open watches of `resource`."""
        mark: dict[str, Any] = {"kind": "VirtualMachineInstance", "apiVersion": "kubevirt.io/v1"}
        mark["metadata"] = {"resourceVersion": str(self.version)}
        self.emit(resource, "BOOKMARK", mark)

    def expire(self, resource: str, namespace: str | None = None) -> None:
        """Send ERROR 410 to the open watches (of `namespace` only, when given) and end them."""
        status = status_body(410, "too old resource version: 1 (2)")
        for watcher in self._open(resource, namespace):
            watcher.queue.put_nowait(line("ERROR", status))
            watcher.queue.put_nowait(_CLOSE)

    def stall(self, resource: str) -> None:
        """The open watches of `resource` go silent; their connections stay open."""
        for watcher in self._open(resource):
            watcher.queue.put_nowait(_STALL)

    def cut(self, resource: str, payload: bytes, *, abort: bool = True) -> None:
        """Send `payload` (half an event line) to the open watches, then drop the connection
        (`abort`) or end the response as if the line were complete."""
        for watcher in self._open(resource):
            watcher.queue.put_nowait((b"\x00cut" if abort else b"\x00end") + payload)

    def end_watches(self, resource: str) -> None:
        """End the open watches of `resource` cleanly, as the server does at timeoutSeconds."""
        for watcher in self._open(resource):
            watcher.queue.put_nowait(_CLOSE)

    # -- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        resource = request.match_info["resource"]
        namespace = request.match_info.get("namespace")
        query = dict(request.query)
        verb: Verb = "watch" if query.get("watch") in ("true", "1") else "list"
        self.requests.append(
            Recorded(verb, resource, namespace, query, request.headers.get("Authorization", ""))
        )
        for fault in self.faults:
            if fault.matches(verb, resource, namespace, query):
                fault.times -= 1
                return web.json_response(
                    status_body(fault.status, fault.message),
                    status=fault.status,
                    headers=dict(fault.headers),
                )
        if resource not in self.objects:
            return web.json_response(status_body(404, "the server could not find it"), status=404)
        if verb == "list":
            return web.json_response(self._list(resource, namespace, query))
        return await self._watch(request, resource, namespace, query)

    def _list(self, resource: str, namespace: str | None, query: Mapping[str, str]) -> Json:
        selector = query.get("labelSelector", "")
        items = [
            obj
            for key, obj in sorted(self.objects[resource].items())
            if (namespace is None or key[0] == namespace)
            and selector_matches(selector, obj["metadata"].get("labels"))
        ]
        version, offset = str(self.version), 0
        if query.get("continue"):
            version, start = query["continue"].split(":")
            offset = int(start)
        limit = int(query.get("limit") or len(items) or 1)
        page = items[offset : offset + limit]
        meta: Json = {"resourceVersion": version}
        if offset + limit < len(items):
            meta["continue"] = f"{version}:{offset + limit}"
        return {
            "apiVersion": "kubevirt.io/v1",
            "kind": "List",
            "metadata": meta,
            "items": copy.deepcopy(page),
        }

    async def _watch(
        self, request: web.Request, resource: str, namespace: str | None, query: Mapping[str, str]
    ) -> web.StreamResponse:
        since = int(query.get("resourceVersion") or self.version)
        watcher = _Watcher(resource, namespace, query.get("labelSelector", ""))
        if since < self.oldest:
            watcher.queue.put_nowait(line("ERROR", status_body(410, "too old resource version")))
            watcher.queue.put_nowait(_CLOSE)
        else:
            for version, kind, event_type, obj in self.history:
                if version > since and watcher.wants(kind, obj):
                    watcher.queue.put_nowait(line(event_type, obj))
        self._watchers.append(watcher)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(query.get("timeoutSeconds") or 1800)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), deadline - loop.time())
                except TimeoutError:
                    break
                if item == _CLOSE:
                    break
                if item == _STALL:
                    await self._stopping.wait()
                    break
                if item.startswith(b"\x00end"):
                    await response.write(item[4:])
                    break
                if item.startswith(b"\x00cut"):
                    await response.write(item[4:])
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                await response.write(item)
        except ConnectionError:
            return response
        finally:
            self._watchers.remove(watcher)
        await response.write_eof()
        return response


# -- recording stand-ins for the Fleet and SelfMetrics -------------------------------------


@dataclass
class RecordingSink:
    """A model of the Fleet contract that records every call."""

    store: dict[str, dict[tuple[str, str], Mapping[str, Any]]] = field(default_factory=dict)
    applied: list[tuple[str, str, Any]] = field(default_factory=list)
    relists: Counter[str] = field(default_factory=Counter)
    synced: set[str] = field(default_factory=set)
    problems: dict[str, list[str | None]] = field(default_factory=dict)
    _seen: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    @staticmethod
    def key(raw: Mapping[str, Any]) -> tuple[str, str] | None:
        meta = raw.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            return None
        return (str(meta.get("namespace", "")), meta["name"])

    def apply(self, resource: Resource, event_type: str, raw: Mapping[str, Any]) -> None:
        self.applied.append((resource, event_type, raw))
        key = self.key(raw)
        if key is None:
            return
        if event_type == "DELETED":
            self.store.setdefault(resource, {}).pop(key, None)
        else:
            self.store.setdefault(resource, {})[key] = raw

    def relist_begin(self, resource: Resource) -> None:
        self._seen[resource] = set()

    def relist_page(self, resource: Resource, raws: Sequence[Mapping[str, Any]]) -> None:
        for raw in raws:
            key = self.key(raw)
            if key is not None:
                self._seen[resource].add(key)
                self.store.setdefault(resource, {})[key] = raw

    def relist_end(self, resource: Resource) -> None:
        seen = self._seen.pop(resource)
        kind = self.store.setdefault(resource, {})
        for key in set(kind) - seen:
            del kind[key]
        self.relists[resource] += 1
        self.synced.add(resource)

    def set_problem(self, resource: Resource, problem: str | None) -> None:
        self.problems.setdefault(resource, []).append(problem)

    def names(self, resource: str) -> set[str]:
        return {f"{ns}/{name}" for ns, name in self.store.get(resource, {})}

    def problem(self, resource: str) -> str | None:
        history = self.problems.get(resource, [])
        return history[-1] if history else None


@dataclass
class RecordingMetrics:
    lists: Counter[tuple[str, str]] = field(default_factory=Counter)
    watches: Counter[tuple[str, str]] = field(default_factory=Counter)
    events: Counter[tuple[str, str]] = field(default_factory=Counter)

    def list_result(self, resource: Resource, result: str) -> None:
        self.lists[(resource, result)] += 1

    def watch_result(self, resource: Resource, result: str) -> None:
        self.watches[(resource, result)] += 1

    def watch_event(self, resource: Resource, event_type: str) -> None:
        self.events[(resource, event_type)] += 1


@dataclass
class RecordingSleep:
    """Records every delay kube asks for and waits only a token amount of it."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(min(seconds, 0.02))


async def eventually(condition: Callable[[], bool], what: str, *, patience: float = 20.0) -> None:
    """Poll `condition` until it holds (bounded generously: the machine is shared and loaded;
    never an assertion on speed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)

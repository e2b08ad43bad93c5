"""Lists of a kind, page by page: the List decoder that keeps the event loop responsive, and the
one-shot read of every kind for `report` and `plan`.

Contract:
- `list_pages(api, target, timing=)` yields (objects, list resourceVersion) page by page,
  `timing.page_size` objects at a time, following continue tokens; it raises `ApiFailure` (gone:
  the continue token expired, list again from the start). Items that are not objects are skipped
  with a warning naming the kind and namespace.
- `decode_list_page(data, slice_size=, on_items=)` decodes a List body with the event loop running:
  its items one by one, yielding to the loop every `slice_size` items.
- `list_all(settings=, progress=, timing=)` reads every object of the four kinds in the settings'
  scope once; it raises `KubeError` naming the kind on any failure. Reading never writes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import structlog

from exporter.kube.api import ApiServer, KubeError, Target, WatchSettings, connect, targets_for
from exporter.kube.errors import ApiFailure, failure_of, unreachable
from exporter.model import RESOURCES, Resource
from exporter.settings import WatchTiming

log = structlog.get_logger("exporter.kube")

#: A decoded JSON object as the API server sends it.
Json = dict[str, Any]


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


async def list_pages(
    api: ApiServer,
    target: Target,
    *,
    timing: WatchTiming,
    on_items: Callable[[list[Json]], None] | None = None,
) -> AsyncIterator[tuple[list[Json], str]]:
    """Yield (objects, list resourceVersion) page by page; raises ApiFailure (gone: the continue
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
                    raise await failure_of(response, target, timing)
                data = await response.read()
            body = await decode_list_page(
                data,
                slice_size=max(1, timing.slice_size),
                on_items=None if on_items is None else _objects_to(on_items, target),
            )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise unreachable(exc, target) from exc
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
        raise ApiFailure(
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
                    async for items, _version in list_pages(api, target, timing=timing):
                        objects.extend(items)
                        if progress is not None:
                            progress(resource, len(objects))
                except ApiFailure as failure:
                    raise KubeError(f"{resource}: {failure.problem}") from failure
            listed[resource] = objects
    return listed

"""Saved fleets: KubeVirt objects read from files instead of a cluster (serve --snapshot, report).

Contract:
- A snapshot is a file or a folder of files (its `*.yaml`, `*.yml` and `*.json`, in name order, not
  recursive). A file holds one or more documents (multi-document YAML, or concatenated JSON values);
  a document is one object or a List (`kind: List` as `kubectl get -o yaml|json` prints it, or a
  typed list such as `VirtualMachineInstanceList` whose items carry no kind); List items are
  flattened.
- Objects of the four watched kinds (group `kubevirt.io`, any version) are kept as raw dicts,
  grouped by `Resource` in file order; other kinds are skipped (logged at debug). Nothing is
  projected here: malformed KubeVirt objects are the Fleet's to count.
- JSON is parsed as JSON, item by item (a 200 MB List never goes through a YAML loader or one giant
  `json.loads`); YAML with libyaml when available, timestamps kept as text as the API serves them.
- Every error is a `SnapshotError` naming the file, the document / item index, and what is wrong.
- `feed_fleet` replaces every kind's contents with the snapshot's in pages, yielding to the event
  loop between pages, and marks every kind listed (a kind absent from the snapshot is listed empty).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import structlog
import yaml

from exporter.model import RESOURCES, Resource

log = structlog.get_logger(__name__)

#: The API group of the watched kinds; every version it serves (v1, deprecated v1alpha3) is read.
GROUP: Final = "kubevirt.io"
KIND_RESOURCES: Final[Mapping[str, Resource]] = {
    "VirtualMachineInstance": "virtualmachineinstances",
    "VirtualMachine": "virtualmachines",
    "VirtualMachineInstanceMigration": "virtualmachineinstancemigrations",
    "KubeVirt": "kubevirts",
}
SUFFIXES: Final = (".yaml", ".yml", ".json")
#: Objects handed to the Fleet per relist page, with a yield to the event loop after each. Like
#: exporter.kube's slices: 100 fixture-sized VMIs are ~20 ms of parse + project + derive + render
#: (500 measured ~100 ms per page, the whole 100 ms stall budget of docs/benchmarks.md).
PAGE_SIZE: Final = 100

Raw = dict[str, Any]
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")


class SnapshotError(ValueError):
    """A snapshot that cannot be read; the message names the file, where in it, and the problem."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One object found in a snapshot: its resource (None for a kind we do not watch) and where."""

    resource: Resource | None
    raw: Raw
    #: File and position, e.g. "fleet.json: item 17" or "a.yaml: document 2, item 0".
    where: str


class RelistTarget(Protocol):
    """What `feed_fleet` drives: the relist half of `exporter.fleet.Fleet`."""

    def relist_begin(self, resource: Resource) -> None: ...
    def relist_page(self, resource: Resource, raws: Sequence[Mapping[str, Any]]) -> None: ...
    def relist_end(self, resource: Resource) -> None: ...


def snapshot_files(path: Path) -> list[Path]:
    """The files of a snapshot: `path` itself, or a folder's YAML/JSON files in name order."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise SnapshotError(f"{path}: folder has no {'/'.join(SUFFIXES)} files")
        return files
    if not path.exists():
        raise SnapshotError(f"{path}: no such file or directory")
    return [path]


def load(path: Path) -> dict[Resource, list[Raw]]:
    """Every watched object of the snapshot at `path`, by resource (every kind, maybe empty)."""
    found: dict[Resource, list[Raw]] = {resource: [] for resource in RESOURCES}
    for file in snapshot_files(path):
        for entry in file_entries(file, read_text(file)):
            if entry.resource is None:
                _log_skipped(entry)
            else:
                found[entry.resource].append(entry.raw)
    return found


def read_text(file: Path) -> str:
    """The file's text (UTF-8, a leading byte-order mark dropped), or SnapshotError naming it."""
    try:
        return file.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise SnapshotError(f"{file}: cannot read: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise SnapshotError(f"{file}: not UTF-8 text (byte {error.start})") from error


def is_json(file: Path, text: str) -> bool:
    """JSON by suffix; a file without a known suffix is JSON when it starts with `{`."""
    if file.suffix in (".yaml", ".yml"):
        return False
    return file.suffix == ".json" or text.lstrip().startswith("{")


def file_entries(file: Path, text: str) -> Iterator[Entry]:
    """The objects of one file's text, in order (lazily, so a caller can pause between them)."""
    if is_json(file, text):
        return json_entries(file, text)
    return yaml_entries(file, text)


async def feed_fleet(*, path: Path, fleet: RelistTarget, page_size: int = PAGE_SIZE) -> int:
    """Replace the fleet's contents with the snapshot's, in pages; return the objects kept."""
    started = time.monotonic()
    files = snapshot_files(path)
    for resource in RESOURCES:
        fleet.relist_begin(resource)
    pages: dict[Resource, list[Raw]] = {resource: [] for resource in RESOURCES}
    kept = skipped = 0
    for file in files:
        text = await asyncio.to_thread(read_text, file)
        entries: Iterator[Entry] = file_entries(file, text)
        if not is_json(file, text):
            # libyaml builds whole documents in one call: do it off the event loop.
            entries = iter(await asyncio.to_thread(list, entries))
        for count, entry in enumerate(entries, start=1):
            if entry.resource is None:
                _log_skipped(entry)
                skipped += 1
            else:
                kept += 1
                page = pages[entry.resource]
                page.append(entry.raw)
                if len(page) >= page_size:
                    fleet.relist_page(entry.resource, page)
                    pages[entry.resource] = []
            if count % page_size == 0:
                await asyncio.sleep(0)
        del text
    for resource in RESOURCES:
        if pages[resource]:
            fleet.relist_page(resource, pages[resource])
        fleet.relist_end(resource)
    log.info(
        "snapshot.loaded",
        path=str(path),
        files=len(files),
        objects=kept,
        skipped=skipped,
        seconds=round(time.monotonic() - started, 3),
    )
    return kept


async def run_snapshot(*, path: Path, fleet: RelistTarget) -> None:
    """Load the snapshot into the fleet, then hold it (returns only by cancellation or error)."""
    await feed_fleet(path=path, fleet=fleet)
    await asyncio.get_running_loop().create_future()


def _log_skipped(entry: Entry) -> None:
    log.debug(
        "snapshot.skipped",
        where=entry.where,
        kind=entry.raw.get("kind"),
        api_version=entry.raw.get("apiVersion"),
    )


# --- documents and Lists ---------------------------------------------------------------------
#
# `where` is the position inside a file, a comma-joined path such as "document 2, item 17"; the top
# level of a single-document file is "document 0".


def _at(where: str, part: str) -> str:
    return f"{where}, {part}" if where else part


def _place(where: str) -> str:
    return where or "document 0"


def document_entries(file: Path, document: object, where: str) -> Iterator[Entry]:
    """The objects of one decoded document (an object, or a List whose items are flattened)."""
    if not isinstance(document, dict):
        raise SnapshotError(
            f"{file}: {_place(where)}: expected an object, got {_type_name(document)}"
        )
    items = document.get("items")
    if isinstance(items, list):
        for index, item in enumerate(items):
            yield from item_entries(file, document, item, _at(where, f"item {index}"))
    else:
        yield _entry(file, document, where)


def item_entries(file: Path, lst: Mapping[str, Any], item: object, where: str) -> Iterator[Entry]:
    """One List item: an object (kind taken from a typed list when the item has none) or a List."""
    if isinstance(item, dict) and "kind" not in item and "apiVersion" not in item:
        list_kind = lst.get("kind")
        if isinstance(list_kind, str) and list_kind != "List" and list_kind.endswith("List"):
            item = {
                "kind": list_kind.removesuffix("List"),
                "apiVersion": lst.get("apiVersion"),
                **item,
            }
    yield from document_entries(file, item, where)


def _entry(file: Path, obj: Raw, where: str) -> Entry:
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise SnapshotError(
            f"{file}: {_place(where)}: kind: expected a non-empty string, got {kind!r}"
        )
    if not isinstance(api_version, str) or not api_version:
        raise SnapshotError(
            f"{file}: {_place(where)}: apiVersion: expected a non-empty string, got {api_version!r}"
        )
    group = api_version.rpartition("/")[0]
    resource = KIND_RESOURCES.get(kind) if group == GROUP else None
    return Entry(resource, obj, f"{file}: {_place(where)}")


def _type_name(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# --- YAML ------------------------------------------------------------------------------------


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # runtime base
    """The safe loader (libyaml's when built with it) that leaves timestamps as text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def yaml_entries(file: Path, text: str) -> Iterator[Entry]:
    """The objects of a (multi-document) YAML text; empty documents are skipped."""
    documents = yaml.load_all(text, Loader=_Loader)
    index = 0
    while True:
        try:
            document = next(documents)
        except StopIteration:
            return
        except yaml.YAMLError as error:
            raise SnapshotError(f"{file}: document {index}: {_yaml_problem(error)}") from error
        if document is not None:
            yield from document_entries(file, document, f"document {index}")
        index += 1


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1} column {mark.column + 1}: {problem}"


# --- JSON ------------------------------------------------------------------------------------


def json_entries(file: Path, text: str) -> Iterator[Entry]:
    """The objects of a JSON text: one or more top-level objects, List items decoded one by one."""
    parser = _JsonParser(file, text)
    position = parser.skip(0)
    index = 0
    while position < len(text):
        where = f"document {index}"
        parser.expect(position, "{", where)
        position = yield from parser.object_entries(position, where if index else "")
        index += 1
    if index == 0:
        raise SnapshotError(f"{file}: empty JSON file")


class _JsonParser:
    """Walks the top level of a JSON text with the C decoder doing every value below it."""

    def __init__(self, file: Path, text: str) -> None:
        self.file = file
        self.text = text
        self.decoder = json.JSONDecoder()

    def object_entries(self, position: int, where: str) -> Generator[Entry, None, int]:
        """Decode the object at `position` member by member, yielding a List's items as they are
        decoded (a huge List is never one call); return the position after the object."""
        members: Raw = {}
        held: list[tuple[int, Raw]] = []  # kind-less items of a list whose kind is not known yet
        has_items = False
        position = self.skip(position + 1)
        while not self.text.startswith("}", position):
            if not self.text.startswith('"', position):
                raise self.error(position, where, "expected a property name")
            key, position = self.value(position, where)
            position = self.expect(position, ":", where)
            if key == "items" and self.text.startswith("[", position):
                has_items = True
                position = yield from self.items(position, where, members, held)
            else:
                members[key], position = self.value(position, where)
            if not self.text.startswith(",", position):
                break
            position = self.skip(position + 1)
        position = self.expect(position, "}", where)
        if not has_items:
            yield from document_entries(self.file, members, where)
        for index, item in held:
            yield from item_entries(self.file, members, item, _at(where, f"item {index}"))
        return position

    def items(
        self, position: int, where: str, members: Raw, held: list[tuple[int, Raw]]
    ) -> Generator[Entry, None, int]:
        """Decode the `items` array at `position` item by item; return the position after it."""
        position = self.skip(position + 1)
        index = 0
        while not self.text.startswith("]", position):
            item_where = _at(where, f"item {index}")
            item, position = self.value(position, item_where)
            if isinstance(item, dict) and "kind" not in item and "kind" not in members:
                held.append((index, item))  # a typed list may name its kind after its items
            else:
                yield from item_entries(self.file, members, item, item_where)
            index += 1
            if self.text.startswith(",", position):
                position = self.skip(position + 1)
            elif not self.text.startswith("]", position):
                raise self.error(position, item_where, "expected ',' or ']' after the item")
        return self.skip(position + 1)

    def value(self, position: int, where: str) -> tuple[Any, int]:
        """Decode one value at `position`; return it and the position after trailing whitespace."""
        try:
            value, end = self.decoder.raw_decode(self.text, position)
        except json.JSONDecodeError as error:
            message = f"line {error.lineno} column {error.colno}: {error.msg}"
            raise SnapshotError(f"{self.file}: {_place(where)}: {message}") from error
        return value, self.skip(end)

    def expect(self, position: int, char: str, where: str) -> int:
        if not self.text.startswith(char, position):
            raise self.error(position, where, f"expected {char!r}")
        return self.skip(position + 1)

    def skip(self, position: int) -> int:
        match = _WHITESPACE.match(self.text, position)
        return match.end() if match else position

    def error(self, position: int, where: str, problem: str) -> SnapshotError:
        line = self.text.count("\n", 0, position) + 1
        column = position - (self.text.rfind("\n", 0, position) + 1) + 1
        return SnapshotError(
            f"{self.file}: {_place(where)}: line {line} column {column}: {problem}"
        )

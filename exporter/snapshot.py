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
  `json.loads`); YAML item by item too (`exporter.yamlstream`: libyaml's events when available,
  timestamps kept as text as the API serves them), so neither keeps more than one item's parse.
- Every error is a `SnapshotError` naming the file, the document / item index, and what is wrong;
  nesting too deep to decode is one too.
- Keys given twice in one object and objects given twice (same kind, namespace and name; the last
  one wins, as a relist would) are accepted and reported in one warning per load with their count.
- A `Census` says which watched kinds a snapshot CAPTURED, which is not the same as "has no
  objects of": a kind is captured when the snapshot holds an object of it or a list typed for it
  (`kind: VirtualMachineInstanceMigrationList`, even with no items). An empty `List` (what
  `kubectl get vmi -A -o yaml` prints on a cluster without VMIs) counts as an empty VMI list;
  kubectl's untyped Lists cannot say more. A snapshot without a VMI list is unusable
  (`Census.require_vmis` raises SnapshotError naming the file and what it holds instead).
- `feed_fleet` replaces every kind's contents with the snapshot's in pages, yielding to the event
  loop between pages, and marks every kind listed (a kind absent from the snapshot is listed empty)
  except the VMIs of a snapshot without a VMI list: those stay unlisted with the reason as the
  fleet's problem, so `serve` stays unready and says why.
  It can be cancelled at any moment: YAML is parsed in a daemon thread that stops at the next item
  and that the process never waits for.

Longer than most modules: the JSON and YAML walkers both turn documents and Lists into the same
`Entry` stream and `Census`; the next split, when it grows, is the JSON walker into its own module
beside `exporter.yamlstream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import structlog

from exporter import yamlstream
from exporter.model import KINDS, RESOURCES, InputError, Resource

log = structlog.get_logger(__name__)

#: The API group of the watched kinds; every version it serves (v1, deprecated v1alpha3) is read.
GROUP: Final = "kubevirt.io"
KIND_RESOURCES: Final[Mapping[str, Resource]] = {kind: r for r, kind in KINDS.items()}
KIND_NAMES: Final = KINDS
SUFFIXES: Final = (".yaml", ".yml", ".json")
#: What is unknown when a snapshot did not capture a kind (warnings, report header, docs).
MISSING_KIND_EFFECTS: Final[Mapping[Resource, str]] = {
    "virtualmachineinstances": "every VMI",
    "virtualmachines": "the run strategy of VMIs owned by a VirtualMachine",
    "virtualmachineinstancemigrations": "migrations in progress and failed update migrations "
    "(beyond each VMI's own migrationState)",
    "kubevirts": "the update policy: whether and how automation updates outdated VMIs",
}
#: Objects handed to the Fleet per relist page, with a yield to the event loop after each. Like
#: exporter.kube's slices: 100 fixture-sized VMIs are ~20 ms of parse + project + derive + render
#: (500 measured ~100 ms per page, the whole 100 ms stall budget of docs/benchmarks.md).
PAGE_SIZE: Final = 100

Raw = dict[str, Any]
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")


class SnapshotError(InputError, ValueError):
    """A snapshot that cannot be read; the message names the file, where in it, and the problem."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One object found in a snapshot: its resource (None for a kind we do not watch) and where."""

    resource: Resource | None
    raw: Raw
    #: File and position, e.g. "fleet.json: item 17" or "a.yaml: document 2, item 0".
    where: str
    #: For the end of a List (not an object): how many items it had. `resource` is then the kind
    #: a typed list names (`VirtualMachineList`), None for kubectl's untyped `List`.
    listed: int | None = None


@dataclass
class Census:
    """What a snapshot holds besides its objects: the kinds captured, the objects skipped."""

    path: Path
    objects: dict[Resource, int] = field(default_factory=lambda: dict.fromkeys(RESOURCES, 0))
    typed_lists: set[Resource] = field(default_factory=set)
    empty_lists: int = 0
    #: Objects of kinds we do not watch, by kind (e.g. {"Pod": 3}).
    skipped: dict[str, int] = field(default_factory=dict)

    def note(self, entry: Entry) -> None:
        """Count one entry of the snapshot."""
        if entry.listed is not None:
            if entry.resource is not None:
                self.typed_lists.add(entry.resource)
            elif entry.listed == 0:
                self.empty_lists += 1
        elif entry.resource is None:
            kind = entry.raw.get("kind")
            name = kind if isinstance(kind, str) else "?"
            self.skipped[name] = self.skipped.get(name, 0) + 1
        else:
            self.objects[entry.resource] += 1

    @property
    def captured(self) -> frozenset[Resource]:
        """The watched kinds the snapshot captured (see the module contract)."""
        found = {r for r in RESOURCES if self.objects[r] or r in self.typed_lists}
        if self.empty_lists:
            found.add("virtualmachineinstances")
        return frozenset(found)

    @property
    def missing(self) -> tuple[Resource, ...]:
        """The watched kinds the snapshot did not capture, in RESOURCES order."""
        return tuple(r for r in RESOURCES if r not in self.captured)

    def require_vmis(self) -> None:
        """Raise SnapshotError unless the snapshot captured VMIs (a list, maybe empty)."""
        if "virtualmachineinstances" in self.captured:
            return
        raise SnapshotError(
            f"{self.path}: holds no VirtualMachineInstance list ({self._contents()}); save "
            "`kubectl get vmi -A -o yaml` into it (on a cluster without VMIs that prints an "
            "empty List, which counts as zero VMIs)"
        )

    def _contents(self) -> str:
        held = [f"{n} {KIND_NAMES[r]}" for r, n in self.objects.items() if n]
        held += [
            f"{n} {kind} without an items list" if kind == "List" else f"{n} {kind}"
            for kind, n in sorted(self.skipped.items())
        ]
        if not held:
            return "it is empty"
        return "it holds " + ", ".join(held)


@dataclass
class Tally:
    """What one load found worth a warning: keys and objects given twice (first place of each)."""

    duplicate_keys: int = 0
    first_duplicate_key: str = ""
    duplicate_objects: int = 0
    first_duplicate_object: str = ""

    def keys_given_twice(self, count: int, first: str) -> None:
        """Count `count` keys given twice, the first of them at `first`."""
        if count:
            self.duplicate_keys += count
            self.first_duplicate_key = self.first_duplicate_key or first

    def object_given_twice(self, where: str) -> None:
        """Count one object whose kind, namespace and name an earlier one had."""
        self.duplicate_objects += 1
        self.first_duplicate_object = self.first_duplicate_object or where

    def warn(self, path: Path) -> None:
        """One warning per kind of duplicate found, with the count and the first place."""
        if self.duplicate_keys:
            log.warning(
                "snapshot.duplicate_keys",
                path=str(path),
                count=self.duplicate_keys,
                first=self.first_duplicate_key,
                kept="the last value of each",
            )
        if self.duplicate_objects:
            log.warning(
                "snapshot.duplicate_objects",
                path=str(path),
                count=self.duplicate_objects,
                first=self.first_duplicate_object,
                kept="the last of each kind, namespace and name",
            )


class RelistTarget(Protocol):
    """What `feed_fleet` drives: the relist half of `exporter.fleet.Fleet`."""

    def relist_begin(self, resource: Resource) -> None: ...
    def relist_page(
        self, resource: Resource, raws: Sequence[Mapping[str, Any]]
    ) -> Sequence[int]: ...
    def relist_end(self, resource: Resource) -> None: ...
    def set_problem(self, resource: Resource, problem: str | None) -> None: ...


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
    return read(path)[0]


def read(path: Path) -> tuple[dict[Resource, list[Raw]], Census]:
    """`load(path)` and the snapshot's `Census`."""
    found: dict[Resource, list[Raw]] = {resource: [] for resource in RESOURCES}
    census = Census(path)
    tally = Tally()
    seen: set[tuple[Resource, object, object]] = set()
    for file in snapshot_files(path):
        for entry in file_entries(file, read_text(file), tally=tally):
            census.note(entry)
            if entry.listed is not None:
                continue
            if entry.resource is None:
                _log_skipped(entry)
                continue
            metadata = entry.raw.get("metadata")
            if isinstance(metadata, dict):  # a malformed one is the Fleet's to name
                identity = (entry.resource, metadata.get("namespace"), metadata.get("name"))
                if identity in seen:
                    tally.object_given_twice(entry.where)
                seen.add(identity)
            found[entry.resource].append(entry.raw)
    tally.warn(path)
    return found, census


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


def file_entries(file: Path, text: str, *, tally: Tally | None = None) -> Iterator[Entry]:
    """The objects of one file's text, in order (lazily, so a caller can pause between them);
    keys given twice are counted in `tally`."""
    if is_json(file, text):
        return json_entries(file, text, tally=tally)
    return yaml_entries(file, text, tally=tally)


async def feed_fleet(
    *,
    path: Path,
    fleet: RelistTarget,
    page_size: int = PAGE_SIZE,
    census: Census | None = None,
) -> int:
    """Replace the fleet's contents with the snapshot's, in pages; return the objects kept.
    `census` (a fresh one by default) counts what the snapshot holds."""
    started = time.monotonic()
    census = Census(path) if census is None else census
    files = snapshot_files(path)
    for resource in RESOURCES:
        fleet.relist_begin(resource)
    pages: dict[Resource, _Page] = {resource: _Page() for resource in RESOURCES}
    kept = skipped = 0
    tally = Tally()
    for file in files:
        text = await asyncio.to_thread(read_text, file)
        entries = file_entries(file, text, tally=tally)
        # JSON decodes an item in well under a millisecond in C: on the loop, in pages. A YAML
        # item costs milliseconds of Python: in a thread, so the loop keeps answering scrapes.
        batches = _batches(entries, page_size) if is_json(file, text) else _off_loop(entries)
        del text, entries
        async with contextlib.aclosing(batches):  # whatever ends the loop stops the decoding
            async for batch in batches:
                for entry in batch:
                    census.note(entry)
                    if entry.listed is not None:
                        continue
                    if entry.resource is None:
                        _log_skipped(entry)
                        skipped += 1
                        continue
                    kept += 1
                    page = pages[entry.resource]
                    page.add(entry)
                    if len(page.raws) >= page_size:
                        page.hand_over(fleet, entry.resource, tally)
                await asyncio.sleep(0)
    for resource in RESOURCES:
        pages[resource].hand_over(fleet, resource, tally)
        if resource == "virtualmachineinstances" and resource not in census.captured:
            fleet.set_problem(resource, f"snapshot {path} holds no VirtualMachineInstance list")
            continue
        fleet.relist_end(resource)
    tally.warn(path)
    log.info(
        "snapshot.loaded",
        path=str(path),
        files=len(files),
        objects=kept,
        skipped=skipped,
        seconds=round(time.monotonic() - started, 3),
    )
    return kept


class _Page:
    """Objects of one kind waiting to be handed to the fleet, with where each was found."""

    __slots__ = ("raws", "wheres")

    def __init__(self) -> None:
        self.raws: list[Raw] = []
        self.wheres: list[str] = []

    def add(self, entry: Entry) -> None:
        self.raws.append(entry.raw)
        self.wheres.append(entry.where)

    def hand_over(self, fleet: RelistTarget, resource: Resource, tally: Tally) -> None:
        """Relist the page into `fleet` (if not empty) and empty it. Objects given twice are
        counted from the fleet's answer: it already holds the keys of this relist, where a set
        of our own would keep every object's name alive, and the allocator's pools with them,
        until the load ends (docs/benchmarks.md)."""
        if not self.raws:
            return
        for position in fleet.relist_page(resource, self.raws):
            tally.object_given_twice(self.wheres[position])
        self.raws, self.wheres = [], []


async def _batches(entries: Iterator[Entry], size: int) -> AsyncGenerator[list[Entry], None]:
    """`entries` decoded on the loop, `size` at a time."""
    batch: list[Entry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


#: Batches a YAML thread may decode ahead of the loop: bounds what it holds when the loop is busy.
_AHEAD: Final = 2
#: How often a blocked YAML thread looks whether it should stop (seconds).
_STOP_POLL: Final = 0.1


async def _off_loop(
    entries: Iterator[Entry], size: int = PAGE_SIZE
) -> AsyncGenerator[list[Entry], None]:
    """`entries` decoded in a daemon thread, `size` at a time, at most `_AHEAD` batches ahead.

    Closing or cancelling the iteration tells the thread to stop before its next item; it is a
    daemon thread, so even one item that takes long (a huge document) never delays the exit.
    """
    loop = asyncio.get_running_loop()
    handed: asyncio.Queue[list[Entry] | BaseException | None] = asyncio.Queue()
    room = threading.Semaphore(_AHEAD)
    stop = threading.Event()

    def put(item: list[Entry] | BaseException | None) -> bool:
        while not room.acquire(timeout=_STOP_POLL):
            if stop.is_set():
                return False
        try:
            loop.call_soon_threadsafe(handed.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is reading any more
            return False
        return not stop.is_set()

    def decode() -> None:
        batch: list[Entry] = []
        try:
            for entry in entries:
                if stop.is_set():
                    return
                batch.append(entry)
                if len(batch) >= size:
                    if not put(batch):
                        return
                    batch = []
            if put(batch):
                put(None)
        except BaseException as error:  # handed to the loop, raised there
            put(error)

    threading.Thread(target=decode, name="snapshot-yaml", daemon=True).start()
    try:
        while (item := await handed.get()) is not None:
            room.release()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


async def run_snapshot(*, path: Path, fleet: RelistTarget) -> None:
    """Load the snapshot into the fleet, then hold it (returns only by cancellation or error).

    A snapshot without a VMI list is logged as one error and held unready (the fleet's problem
    says why); kinds it did not capture are logged as one warning naming what is unknown.
    """
    census = Census(path)
    await feed_fleet(path=path, fleet=fleet, census=census)
    try:
        census.require_vmis()
    except SnapshotError as error:
        log.error("snapshot.unusable", error=str(error))
    else:
        if census.missing:
            log.warning(
                "snapshot.kinds_missing",
                path=str(path),
                kinds=[KIND_NAMES[r] for r in census.missing],
                unknown=[MISSING_KIND_EFFECTS[r] for r in census.missing],
            )
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
        yield list_end(file, document, where, len(items))
    else:
        yield _entry(file, document, where)


def list_end(file: Path, lst: Mapping[str, Any], where: str, items: int) -> Entry:
    """The Entry that ends a List of `items` items: which kind it is typed for, if any."""
    kind, api_version = lst.get("kind"), lst.get("apiVersion")
    resource = None
    if (
        isinstance(kind, str)
        and isinstance(api_version, str)
        and api_version.rpartition("/")[0] == GROUP
    ):
        resource = KIND_RESOURCES.get(kind.removesuffix("List"))
    return Entry(resource, {}, f"{file}: {_place(where)}", listed=items)


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


def yaml_entries(file: Path, text: str, *, tally: Tally | None = None) -> Iterator[Entry]:
    """The objects of a (multi-document) YAML text, a List's items as they are read; empty
    documents are skipped."""
    reader = yamlstream.Reader(text)
    try:
        yield from _yaml_entries(file, reader.documents())
    except yamlstream.YamlProblem as error:
        raise SnapshotError(f"{file}: {error}") from error
    finally:
        if tally is not None:
            tally.keys_given_twice(reader.duplicate_keys, f"{file}: {reader.first_duplicate}")


def _yaml_entries(
    file: Path, parts: Iterator[yamlstream.Item | yamlstream.Document]
) -> Iterator[Entry]:
    held: list[yamlstream.Item] = []  # kind-less items of a list whose kind comes after them
    items = 0  # of the document being read
    for part in parts:
        where = f"document {part.index if isinstance(part, yamlstream.Document) else part.document}"
        if isinstance(part, yamlstream.Item):
            items += 1
            if isinstance(part.value, dict) and "kind" not in part.value:
                held.append(part)
            else:
                yield from item_entries(file, {}, part.value, _at(where, f"item {part.index}"))
        elif part.streamed:
            members = part.value
            for item in held:
                yield from item_entries(file, members, item.value, _at(where, f"item {item.index}"))
            held = []
            yield list_end(file, members, where, items)
            items = 0
        elif part.value is not None:
            yield from document_entries(file, part.value, where)


# --- JSON ------------------------------------------------------------------------------------


def json_entries(file: Path, text: str, *, tally: Tally | None = None) -> Iterator[Entry]:
    """The objects of a JSON text: one or more top-level objects, List items decoded one by one."""
    parser = _JsonParser(file, text)
    position = parser.skip(0)
    index = 0
    try:
        while position < len(text):
            where = f"document {index}"
            parser.expect(position, "{", where)
            position = yield from parser.object_entries(position, where if index else "")
            index += 1
    finally:
        if tally is not None:
            tally.keys_given_twice(parser.keys.duplicates, parser.keys.first)
    if index == 0:
        raise SnapshotError(f"{file}: empty JSON file")


class _KeyCounter:
    """The decoder's object hook: builds each object and counts keys given twice in one (the
    last value wins, as in Go's encoding/json)."""

    def __init__(self, file: Path) -> None:
        self.file = file
        #: Where the value being decoded is (set by the parser before each value).
        self.where = ""
        self.duplicates = 0
        self.first = ""

    def __call__(self, pairs: list[tuple[str, Any]]) -> Raw:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            self.duplicates += len(pairs) - len(obj)
            if not self.first:
                keys = [key for key, _ in pairs]
                key = next(k for k in keys if keys.count(k) > 1)
                self.first = f"{self.file}: {_place(self.where)}: key {key!r}"
        return obj


class _JsonParser:
    """Walks the top level of a JSON text with the C decoder doing every value below it."""

    def __init__(self, file: Path, text: str) -> None:
        self.file = file
        self.text = text
        # The hook is an object of its own: a bound method of the parser would make parser and
        # decoder a reference cycle, and the text would then live until a cyclic collection, or
        # for ever once `serve` has frozen what was alive at its first sync (docs/benchmarks.md).
        self.keys = _KeyCounter(file)
        self.decoder = json.JSONDecoder(object_pairs_hook=self.keys)

    def object_entries(self, position: int, where: str) -> Generator[Entry, None, int]:
        """Decode the object at `position` member by member, yielding a List's items as they are
        decoded (a huge List is never one call); return the position after the object."""
        members: Raw = {}
        held: list[tuple[int, Raw]] = []  # kind-less items of a list whose kind is not known yet
        has_items = False
        count = 0
        position = self.skip(position + 1)
        while not self.text.startswith("}", position):
            if not self.text.startswith('"', position):
                raise self.error(position, where, "expected a property name")
            key, position = self.value(position, where)
            position = self.expect(position, ":", where)
            if key == "items" and self.text.startswith("[", position):
                has_items = True
                position, count = yield from self.items(position, where, members, held)
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
        if has_items:
            yield list_end(self.file, members, where, count)
        return position

    def items(
        self, position: int, where: str, members: Raw, held: list[tuple[int, Raw]]
    ) -> Generator[Entry, None, tuple[int, int]]:
        """Decode the `items` array at `position` item by item; return the position after it
        and the number of items."""
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
        return self.skip(position + 1), index

    def value(self, position: int, where: str) -> tuple[Any, int]:
        """Decode one value at `position`; return it and the position after trailing whitespace."""
        self.keys.where = where
        try:
            value, end = self.decoder.raw_decode(self.text, position)
        except json.JSONDecodeError as error:
            message = f"line {error.lineno} column {error.colno}: {error.msg}"
            raise SnapshotError(f"{self.file}: {_place(where)}: {message}") from error
        except RecursionError as error:  # the C decoder recurses once per level
            raise self.error(position, where, "nested too deeply to decode") from error
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

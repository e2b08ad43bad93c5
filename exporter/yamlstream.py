"""YAML documents as plain values, a List's items one at a time (the snapshot's YAML reader).

Contract:
- `documents(text)` yields, in order, every document of a (multi-document) YAML text. A document
  whose top level is a mapping with an `items` sequence is streamed: each element of that sequence
  comes first as an `Item` (built, handed over and forgotten before the next one is read), then the
  document itself as a `Document` whose value holds every other member and `streamed=True`. Any
  other document is one `Document` with its whole value. Empty documents come as `Document(None)`.
- Values are what `yaml.safe_load` builds (the same implicit types, `<<` merge keys, anchors and
  aliases as shared references, so an alias bomb stays small), except: timestamps stay text as the
  API server serves them; `!!set`, `!!omap`, `!!pairs` and application tags are refused (nothing
  Kubernetes prints uses them); a node may not refer to itself; nesting deeper than `MAX_DEPTH`
  is refused.
- Every problem is a `YamlProblem` naming where (`document 2, item 17`), the line and column.
- `duplicate_keys` counts mapping keys given twice (the last one wins, as in `yaml.safe_load`),
  with the place of the first one in `first_duplicate`.
- Built on libyaml's event parser when PyYAML has it (no node graph is kept: the cost that made a
  whole-document load take about 1.3 s and 45 MB per MB of input), on PyYAML's own otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from yaml import events
from yaml.nodes import ScalarNode

#: Deeper than any Kubernetes object (a VMI's deepest field is about 12 levels); bounded so that
#: whatever later walks the value cannot exhaust Python's stack.
MAX_DEPTH: Final = 200

_STR: Final = "tag:yaml.org,2002:str"
_MERGE: Final = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS: Final = (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # runtime base
    """The safe loader (libyaml's when built with it) that leaves timestamps as text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class YamlProblem(ValueError):
    """Text that is not YAML, or YAML a snapshot cannot hold; `where` and `line`/`column` say
    where (1-based), `problem` what."""

    def __init__(self, where: str, line: int | None, column: int | None, problem: str) -> None:
        self.where, self.line, self.column, self.problem = where, line, column, problem
        at = f"line {line} column {column}: " if line is not None else ""
        super().__init__(f"{where}: {at}{problem}")


@dataclass(frozen=True, slots=True)
class Item:
    """One element of a document's top-level `items` sequence."""

    document: int
    index: int
    value: Any


@dataclass(frozen=True, slots=True)
class Document:
    """A document; with `streamed`, its `items` were handed over as `Item`s and are not in it."""

    index: int
    value: Any
    streamed: bool = False


@dataclass
class _Open:
    """A mapping or sequence being built."""

    value: dict[Any, Any] | list[Any]
    anchor: str | None
    #: The key whose value comes next (mappings only); `_NO_KEY` between pairs.
    key: Any = None
    #: Mappings named by `<<` keys, in order.
    merges: list[dict[Any, Any]] = field(default_factory=list)
    #: This is the document's top-level `items` sequence: its elements are handed over.
    streamed: bool = False


_NO_KEY: Final = object()


@dataclass
class Reader:
    """One pass over a YAML text; iterate `documents()` once."""

    text: str
    duplicate_keys: int = 0
    first_duplicate: str = ""
    #: Where the reader is, for problems: "document 2" or "document 0, item 17".
    _where: str = "document 0"

    def documents(self) -> Iterator[Item | Document]:
        loader = _Loader(self.text)
        try:
            yield from self._documents(loader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            raise YamlProblem(
                self._where,
                mark.line + 1 if mark else None,
                mark.column + 1 if mark else None,
                str(error.problem or error),
            ) from error
        except yaml.YAMLError as error:
            raise YamlProblem(self._where, None, None, str(error)) from error
        finally:
            loader.dispose()

    def _documents(self, loader: Any) -> Iterator[Item | Document]:
        index = 0
        loader.get_event()  # StreamStartEvent
        while not loader.check_event(events.StreamEndEvent):
            loader.get_event()  # DocumentStartEvent
            self._where = f"document {index}"
            yield from self._document(loader, index)
            loader.get_event()  # DocumentEndEvent
            index += 1

    def _document(self, loader: Any, index: int) -> Iterator[Item | Document]:
        """Build one document from its events without recursion (depth costs no stack)."""
        anchors: dict[str, Any] = {}
        stack: list[_Open] = []
        items = 0
        streamed_items = False
        while True:
            event = loader.get_event()
            kind = type(event)
            if kind is events.ScalarEvent:
                value = self._scalar(loader, event)
                if event.anchor is not None:
                    anchors[event.anchor] = value
            elif kind is events.AliasEvent:
                if event.anchor not in anchors:  # also a node referring to itself
                    raise self._problem(event, f"found undefined alias {event.anchor!r}")
                value = anchors[event.anchor]
            elif kind is events.MappingStartEvent or kind is events.SequenceStartEvent:
                if event.tag not in _COLLECTION_TAGS:
                    raise self._problem(event, f"tag {event.tag} is not supported in a snapshot")
                if len(stack) >= MAX_DEPTH:
                    raise self._problem(event, f"nested deeper than {MAX_DEPTH} levels")
                is_map = kind is events.MappingStartEvent
                streamed = not is_map and len(stack) == 1 and stack[0].key == "items"
                if streamed:
                    streamed_items = True
                    self._where = f"document {index}, item 0"
                stack.append(_Open({} if is_map else [], event.anchor, _NO_KEY, streamed=streamed))
                continue
            elif kind is events.MappingEndEvent or kind is events.SequenceEndEvent:
                done = stack.pop()
                value = _merged(done)
                if done.anchor is not None:
                    anchors[done.anchor] = value
                if done.streamed:  # `items` was handed over, not kept
                    stack[-1].key = _NO_KEY
                    self._where = f"document {index}"
                    continue
            else:
                raise self._problem(event, f"unexpected {kind.__name__}")
            if not stack:
                yield Document(index, value, streamed=streamed_items)
                return
            top = stack[-1]
            if top.key is _NO_KEY and isinstance(top.value, dict):
                self._key(top, event, value)
                continue
            if isinstance(value, _MergeKey):
                raise self._problem(event, "'<<' is a merge key, not a value")
            if top.streamed:
                yield Item(index, items, value)
                items += 1
                self._where = f"document {index}, item {items}"
            elif isinstance(top.value, list):
                top.value.append(value)
            else:
                self._member(top, event, value)

    def _key(self, top: _Open, event: Any, key: Any) -> None:
        if isinstance(key, dict | list):
            raise self._problem(event, "a mapping key must be a scalar")
        top.key = key

    def _member(self, top: _Open, event: Any, value: Any) -> None:
        key, top.key = top.key, _NO_KEY
        mapping = top.value
        assert isinstance(mapping, dict)
        if isinstance(key, _MergeKey):
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(source, dict) for source in sources):
                raise self._problem(event, "a << merge key needs a mapping or a list of them")
            top.merges.extend(sources)
            return
        if key in mapping:
            self.duplicate_keys += 1
            if not self.first_duplicate:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                self.first_duplicate = f"{self._where}: line {line}: key {key!r}"
        mapping[key] = value

    def _scalar(self, loader: Any, event: Any) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = loader.resolve(ScalarNode, event.value, event.implicit)
        if tag == _STR:
            return event.value
        if tag == _MERGE:
            return _MergeKey()
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        constructor = loader.yaml_constructors.get(tag)
        if constructor is None:
            raise self._problem(event, f"tag {tag} is not supported in a snapshot")
        return constructor(loader, node)

    def _problem(self, event: Any, problem: str) -> YamlProblem:
        mark = event.start_mark
        return YamlProblem(
            self._where, mark.line + 1 if mark else None, mark.column + 1 if mark else None, problem
        )


class _MergeKey:
    """The `<<` key: its value's mappings are merged into the mapping holding it."""

    __hash__ = object.__hash__


def _merged(done: _Open) -> dict[Any, Any] | list[Any]:
    """The finished value; `<<` sources fill in keys the mapping does not set, earlier sources
    taking precedence over later ones (as `yaml.safe_load` does)."""
    if not done.merges:
        return done.value
    merged: dict[Any, Any] = {}
    for source in reversed(done.merges):
        merged.update(source)
    assert isinstance(done.value, dict)
    merged.update(done.value)
    return merged


def documents(text: str) -> Iterator[Item | Document]:
    """The documents of `text` (see the module contract); duplicate keys are not reported."""
    return Reader(text).documents()

"""Typed reads of one raw Kubernetes object, failing with a message that names the field.

Contract:
- `open_object(resource, raw)` returns a `Reader`, the metadata, the namespace and the name of a
  raw object; only `metadata.name` is required.
- Every `Reader` read returns the field's value, or its documented default when the field is absent
  or null; a present field of the wrong type raises `MalformedObject`, whose text names the
  resource, the object (`namespace/name`, or `<unnamed>`) and the field path. Timestamps are
  RFC 3339 strings and become Unix seconds.
- `intern`/`intern_optional` share repeated strings through `sys.intern`, so 100k records stay
  small.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, NoReturn

from exporter.model import Resource
from exporter.timeparse import parse_rfc3339

#: The one empty tuple every empty collection of a record shares.
NOTHING: Final[tuple[Any, ...]] = ()
_EMPTY: Final[Mapping[str, Any]] = {}


class MalformedObject(ValueError):
    """A raw object that cannot be projected.

    str() names resource, namespace/name (or '<unnamed>'), the field path and the problem, e.g.
    'virtualmachineinstances default/vm-1: status.phase: expected a string, got integer'.
    """

    def __init__(self, resource: Resource, key: str, field: str, problem: str) -> None:
        super().__init__(f"{resource} {key}: {field}: {problem}")
        self.resource: Resource = resource
        #: "namespace/name", "name" without a namespace, "<unnamed>" without a usable name.
        self.key = key
        #: Dotted path of the offending field, e.g. "status.conditions[2].status".
        self.field = field
        self.problem = problem


def _json_type(value: object) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


class Reader:
    """Typed reads from one raw object; every failure raises MalformedObject naming the path.

    Field paths are put together only when something fails, so a good field costs a dict lookup
    and an isinstance check.
    """

    __slots__ = ("key", "resource")

    def __init__(self, resource: Resource, key: str) -> None:
        self.resource: Resource = resource
        self.key = key

    def fail(self, path: str, problem: str) -> NoReturn:
        raise MalformedObject(self.resource, self.key, path, problem)

    def wrong(self, path: str, expected: str, value: object) -> NoReturn:
        self.fail(path, f"expected {expected}, got {_json_type(value)}")

    def mapping(self, parent: Mapping[str, Any], name: str, path: str) -> Mapping[str, Any]:
        value = parent.get(name)
        if value is None:
            return _EMPTY
        if not isinstance(value, Mapping):
            self.wrong(_join(path, name), "an object", value)
        return value

    def array(self, parent: Mapping[str, Any], name: str, path: str) -> Sequence[Any]:
        value = parent.get(name)
        if value is None:
            return NOTHING
        if not isinstance(value, list | tuple):
            self.wrong(_join(path, name), "an array", value)
        return value

    def string(self, parent: Mapping[str, Any], name: str, path: str) -> str | None:
        value = parent.get(name)
        if value is None or isinstance(value, str):
            return value
        self.wrong(_join(path, name), "a string", value)

    def boolean(self, parent: Mapping[str, Any], name: str, path: str) -> bool | None:
        value = parent.get(name)
        if value is None or isinstance(value, bool):
            return value
        self.wrong(_join(path, name), "a boolean", value)

    def integer(self, parent: Mapping[str, Any], name: str, path: str) -> int | None:
        value = parent.get(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        self.wrong(_join(path, name), "an integer", value)

    def timestamp(self, parent: Mapping[str, Any], name: str, path: str) -> float | None:
        text = self.string(parent, name, path)
        if text is None:
            return None
        seconds = parse_rfc3339(text)
        if seconds is None:
            self.fail(_join(path, name), f"expected an RFC 3339 timestamp, got {text[:64]!r}")
        return seconds

    def items(
        self, parent: Mapping[str, Any], name: str, path: str
    ) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """The objects of an array field, each with its path."""
        for index, item in enumerate(self.array(parent, name, path)):
            item_path = f"{_join(path, name)}[{index}]"
            if not isinstance(item, Mapping):
                self.wrong(item_path, "an object", item)
            yield item_path, item

    def string_map(self, parent: Mapping[str, Any], name: str, path: str) -> Mapping[str, str]:
        """A map of strings (labels): every key and value is checked."""
        value = self.mapping(parent, name, path)
        for key, item in value.items():
            if not isinstance(key, str):
                self.wrong(f"{_join(path, name)}", "string keys", key)
            if not isinstance(item, str):
                self.wrong(f"{_join(path, name)}[{key!r}]", "a string", item)
        return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def open_object(resource: Resource, raw: object) -> tuple[Reader, Mapping[str, Any], str, str]:
    """Reader, metadata, namespace and name of a raw object (the name is required)."""
    if not isinstance(raw, Mapping):
        Reader(resource, "<unnamed>").wrong("(object)", "an object", raw)
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    key_ns = namespace if isinstance(namespace, str) and namespace else ""
    key_name = name if isinstance(name, str) and name else "<unnamed>"
    reader = Reader(resource, f"{key_ns}/{key_name}" if key_ns else key_name)
    meta = reader.mapping(raw, "metadata", "")
    checked_name = reader.string(meta, "name", "metadata")
    if not checked_name:
        reader.fail("metadata.name", "missing")
    checked_namespace = reader.string(meta, "namespace", "metadata") or ""
    return reader, meta, sys.intern(checked_namespace), checked_name


def intern(value: str | None) -> str:
    return sys.intern(value) if value else ""


def intern_optional(value: str | None) -> str | None:
    return sys.intern(value) if value else None

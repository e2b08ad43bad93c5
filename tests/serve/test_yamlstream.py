"""The streamed YAML reader builds what `yaml.safe_load` builds, a List's items one at a time."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import yamlstream
from exporter.yamlstream import Document, Item, Reader, YamlProblem


def rebuilt(text: str) -> list[Any]:
    """The documents of `text` as one value each, the streamed items put back."""
    items: dict[int, list[Any]] = {}
    documents: list[Any] = []
    for part in yamlstream.documents(text):
        if isinstance(part, Item):
            items.setdefault(part.document, []).append(part.value)
        elif part.streamed:
            documents.append({**part.value, "items": items.pop(part.index, [])})
        else:
            documents.append(part.value)
    return documents


def safe_load_all(text: str) -> list[Any]:
    """What `yaml.safe_load_all` gives, timestamps kept as text (as the reader keeps them)."""
    return list(yaml.load_all(text, Loader=yamlstream._Loader))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["yes", "~", "0x1F", "1e3", "2024-01-02T03:04:05Z", "<<", "=", ".inf"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(documents=st.lists(values, min_size=1, max_size=3), flow=st.booleans())
def test_any_dumped_value_reads_back_as_safe_load_reads_it(
    documents: list[Any], flow: bool
) -> None:
    text = yaml.safe_dump_all(documents, default_flow_style=flow)
    assert rebuilt(text) == safe_load_all(text)


@settings(max_examples=100, deadline=None)
@given(items=st.lists(values, max_size=6), extra=st.dictionaries(st.text(max_size=5), values))
def test_a_lists_items_come_one_by_one_before_the_rest_of_the_document(
    items: list[Any], extra: dict[str, Any]
) -> None:
    extra.pop("items", None)
    text = yaml.safe_dump({**extra, "items": items}, sort_keys=False)
    parts = list(yamlstream.documents(text))
    assert [p.value for p in parts if isinstance(p, Item)] == items
    assert parts[-1] == Document(0, extra, streamed=True)


def test_anchors_aliases_and_merge_keys_are_read_as_safe_load_reads_them() -> None:
    text = """
base: &base {a: 1, b: 2}
other: &other {b: 3, c: 4}
merged: {<<: [*base, *other], c: 5}
single: {<<: *base, a: 0}
items:
- &item {name: x, tags: &tags [t1, t2]}
- *item
- {name: y, tags: *tags}
"""
    assert rebuilt(text) == safe_load_all(text)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("items:\n- a\n- !!set {x}\n", "document 0, item 1", "tag tag:yaml.org,2002:set"),
        ("a: &x [*x]\n", "document 0", "undefined alias 'x'"),
        ("items:\n- ok\n- {[1]: 2}\n", "document 0, item 1", "a mapping key must be a scalar"),
        ("a: 1\n---\nb: !custom 2\n", "document 1", "tag !custom"),
        ("items:\n- a\n- [unclosed\n", "document 0, item 1", "expected ',' or ']'"),
        ("a: " + "[" * (yamlstream.MAX_DEPTH + 1), "document 0", "nested deeper than"),
        ("a: <<\n", "document 0", "merge key, not a value"),
    ],
)
def test_problems_name_the_document_and_item_and_the_line(
    text: str, where: str, problem: str
) -> None:
    with pytest.raises(YamlProblem) as caught:
        list(yamlstream.documents(text))
    assert caught.value.where == where
    assert caught.value.line is not None
    assert problem in str(caught.value)


def test_nesting_below_the_limit_needs_no_stack() -> None:
    depth = yamlstream.MAX_DEPTH - 1
    (document,) = rebuilt("a: " + "[" * depth + "]" * depth)
    for _ in range(depth):
        document = document["a"] if isinstance(document, dict) else document[0]
    assert document == [] or document == {}


def test_keys_given_twice_are_counted_and_the_last_wins() -> None:
    reader = Reader("items:\n- {a: 1, a: 2}\n- {b: 1}\n- {c: 1, c: 2, c: 3}\n")
    assert [p.value for p in reader.documents() if isinstance(p, Item)] == [
        {"a": 2},
        {"b": 1},
        {"c": 3},
    ]
    assert reader.duplicate_keys == 3
    assert reader.first_duplicate.startswith("document 0, item 0: line 2: key 'a'")

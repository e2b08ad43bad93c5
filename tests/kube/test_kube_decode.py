"""List pages are decoded item by item with the loop running, to exactly what json.loads gives."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.kube import decode_list_page

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
lists = st.fixed_dictionaries(
    {"items": st.lists(st.dictionaries(st.text(), values, max_size=5), max_size=30)},
    optional={"apiVersion": st.text(), "kind": st.text(), "metadata": values},
)


def decode(data: bytes, slice_size: int = 3) -> Any:
    return asyncio.run(decode_list_page(data, slice_size=slice_size))


@settings(max_examples=200, deadline=None)
@given(body=lists, indent=st.sampled_from([None, 0, 2]), ascii_only=st.booleans())
def test_a_list_page_decodes_to_what_json_loads_gives(
    body: dict[str, Any], indent: int | None, ascii_only: bool
) -> None:
    data = json.dumps(body, indent=indent, ensure_ascii=ascii_only).encode()
    assert decode(data) == json.loads(data)


@settings(max_examples=100, deadline=None)
@given(body=values)
def test_any_other_json_decodes_to_what_json_loads_gives(body: Any) -> None:
    data = json.dumps(body).encode()
    assert decode(data) == json.loads(data)


async def test_the_loop_runs_while_a_large_page_is_decoded() -> None:
    page = {"items": [{"metadata": {"name": f"vmi-{i}"}} for i in range(1000)], "kind": "List"}
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    decoded = await decode_list_page(json.dumps(page).encode(), slice_size=100)
    task.cancel()
    assert decoded == page
    assert ticks >= 9  # one yield per slice of 100 items


@pytest.mark.parametrize(
    "data",
    [b'{"items": [{"a": 1} {"b": 2}]}', b'{"items": [1,', b'{"kind" "List"}', b"\xff\xfe", b"{"],
)
def test_broken_json_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode(data)


async def test_with_a_receiver_items_are_handed_over_in_slices_and_not_kept() -> None:
    page = {"items": [{"n": i} for i in range(250)], "metadata": {"continue": "t"}}
    slices: list[list[Any]] = []
    decoded = await decode_list_page(
        json.dumps(page).encode(), slice_size=100, on_items=slices.append
    )
    assert [len(s) for s in slices] == [100, 100, 50]
    assert [item for s in slices for item in s] == page["items"]
    assert decoded == {"items": [], "metadata": {"continue": "t"}}

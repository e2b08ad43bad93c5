"""`table`: columns that fit a width, ages and durations as kubectl and Go spell them."""

from __future__ import annotations

import pytest

from exporter.table import format_table, go_duration, short_age


def test_format_table_never_cuts_a_cell_and_leaves_out_whole_columns_in_order() -> None:
    rows = [["abcdefghijklmnopqrstuvwxyz", "worker-node-01.example", "restart"], ["b", "n", "wait"]]
    table = format_table(["NAME", "NODE", "ACTION"], rows, width=40, hide_first=("NODE",))
    assert table.lines == [
        "NAME                       ACTION",
        "abcdefghijklmnopqrstuvwxyz restart",
        "b                          wait",
    ]
    assert table.hidden == ["NODE"]


def test_format_table_narrows_the_gap_before_leaving_out_a_column() -> None:
    rows = [["abcdefghijklmnopqrstuvwxyz", "migration", "restart"], ["b", "-", "wait"]]
    table = format_table(["NAME", "REASON", "ACTION"], rows, width=44, hide_first=("REASON",))
    assert table.lines == [
        "NAME                       REASON    ACTION",
        "abcdefghijklmnopqrstuvwxyz migration restart",
        "b                          -         wait",
    ]
    assert table.hidden == []


def test_format_table_keeps_lines_long_rather_than_cut_what_must_stay() -> None:
    table = format_table(["NAMESPACE", "ACTION"], [["a-very-long-namespace", "restart"]], width=5)
    assert table.lines == ["NAMESPACE             ACTION", "a-very-long-namespace restart"]
    assert table.hidden == []


def test_format_table_without_a_width_shows_everything() -> None:
    rows = [["x" * 300, "y"]]
    assert format_table(["A", "B"], rows, width=None, hide_first=("B",)).hidden == []


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (5, "5s"),
        (125, "2m"),
        (3600, "1h"),
        (3 * 3600 + 300, "3h5m"),
        (86400 + 7200, "1d2h"),
        (12 * 86400, "12d"),
    ],
)
def test_short_age_reads_like_kubectl(seconds: float, expected: str) -> None:
    assert short_age(seconds) == expected


@pytest.mark.parametrize(("seconds", "expected"), [(60, "1m0s"), (5, "5s"), (3725, "1h2m5s")])
def test_go_duration_spells_the_interval_as_the_kubevirt_cr_does(
    seconds: float, expected: str
) -> None:
    assert go_duration(seconds) == expected

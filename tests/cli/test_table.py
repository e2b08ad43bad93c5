"""`table`: columns that fit a width, ages and durations as kubectl and Go spell them."""

from __future__ import annotations

import pytest

from exporter.table import format_table, go_duration, short_age


def test_format_table_shortens_other_cells_before_names() -> None:
    rows = [["abcdefghijklmnopqrstuvwxyz", "worker-node-01.example", "restart"], ["b", "n", "wait"]]
    assert format_table(["NAME", "NODE", "ACTION"], rows, width=50) == [
        "NAME                        NODE           ACTION",
        "abcdefghijklmnopqrstuvwxyz  worker~xample  restart",
        "b                           n              wait",
    ]


def test_format_table_narrows_the_gap_then_cuts_names_in_the_middle() -> None:
    rows = [["abcdefghijklmnopqrstuvwxyz", "migration", "restart"], ["b", "-", "wait"]]
    assert format_table(["NAME", "REASON", "ACTION"], rows, width=30) == [
        "NAME         REASON    ACTION",
        "abcdef~vwxyz migration restart",
        "b            -         wait",
    ]


def test_format_table_never_cuts_below_the_header() -> None:
    lines = format_table(["NAMESPACE", "ACTION"], [["a-very-long-namespace", "restart"]], width=5)
    assert lines == ["NAMESPACE ACTION", "a-ve~pace restart"]


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

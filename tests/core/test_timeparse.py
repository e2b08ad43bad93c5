"""`timeparse`: RFC 3339 timestamps and Go durations, as the API server and Go read them."""

from __future__ import annotations

import pytest

from exporter.timeparse import parse_go_duration, parse_rfc3339


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1970-01-01T00:00:00Z", 0.0),
        ("2024-09-18T19:43:56Z", 1726688636.0),
        ("2024-09-18t19:43:56z", 1726688636.0),
        ("2024-04-30T16:22:02.151446447Z", 1714494122.151446447),
        ("2024-01-01T02:00:00+02:00", 1704067200.0),
        ("2023-12-31T21:30:00-02:30", 1704067200.0),
        ("2024-02-29T00:00:00Z", 1709164800.0),
        ("2023-02-29T00:00:00Z", None),
        ("2024-09-18T24:00:00Z", None),
        ("2024-09-18T19:43:60Z", None),
        ("2024-09-18T19:43:56", None),
        ("2024-09-18 19:43:56Z", None),
        ("2024-09-18", None),
        ("0000-01-01T00:00:00Z", None),
        ("", None),
        ("२०२४-09-18T19:43:56Z", None),
    ],
)
def test_rfc3339_timestamps_parse_to_unix_seconds(text: str, seconds: float | None) -> None:
    assert parse_rfc3339(text) == (None if seconds is None else pytest.approx(seconds, abs=1e-6))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m0s", 60.0),
        ("1m", 60.0),
        ("90s", 90.0),
        ("1h2m3s", 3723.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("2us", 2e-6),
        ("2µs", 2e-6),
        ("2μs", 2e-6),
        ("1ns", 1e-9),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("-1m", -60.0),
        ("+1m", 60.0),
        ("0", 0.0),
        ("-0", 0.0),
        ("", None),
        ("1", None),
        ("s", None),
        (".s", None),
        ("1d", None),
        ("1m 0s", None),
        ("1 minute", None),
        ("3000000h", None),
        ("9" * 40 + "s", None),
    ],
)
def test_go_durations_parse_as_time_parse_duration_does(text: str, seconds: float | None) -> None:
    assert parse_go_duration(text) == (None if seconds is None else pytest.approx(seconds))

"""Text layout for the terminal: aligned tables that fit a width, bullets, ages and durations.

Contract:
- Pure: text in, text out; no IO, no clock (`now` is passed in).
- `format_table(headers, rows, width=)` left-aligns columns and, when the table is too wide, gives
  way in the order `_FIRST_FLOORS` describes; a cut is marked with "~" and a column never gets
  narrower than its header.
- `short_age`, `go_duration` and `rfc3339` spell times as kubectl, Go's time.Duration and the API
  server do.
"""

from __future__ import annotations

import datetime
import textwrap
from collections.abc import Sequence
from typing import Final

#: How a table too wide for its width gives way, step by step until it fits: first the cells
#: that abbreviate well are shortened to a floor (the first group); if that is not enough, the
#: gap between columns narrows from two spaces to one (and the first group is shortened only as
#: far as still needed); then names are shortened to a floor (the second group), and last the
#: widest shrinkable column loses a character at a time, never below its header. Names
#: are cut in the middle (their ends tell replicas apart), other cells at the end; "~" marks a cut.
_FIRST_FLOORS: Final[tuple[tuple[str, int], ...]] = (
    ("MIGRATABLE", 10),
    ("RUN", 10),
    ("NODE", 10),
    ("EVICTION", 11),
)
_NAME_FLOORS: Final[tuple[tuple[str, int], ...]] = (("NAMESPACE", 12), ("NAME", 18))
_SHRINKABLE: Final = frozenset(h for h, _ in (*_FIRST_FLOORS, *_NAME_FLOORS))
_CUT_IN_THE_MIDDLE: Final = frozenset({"NAMESPACE", "NAME", "NODE"})


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int) -> list[str]:
    """Left-aligned columns, shortened as `_FIRST_FLOORS` describes to fit `width`.

    A column never gets narrower than its header; when even that does not fit, lines stay long.
    """
    natural = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    for gap in (2, 1):
        widths = list(natural)
        _shrink_to_floors(headers, widths, _FIRST_FLOORS, _excess(widths, gap, width))
        if _excess(widths, gap, width) <= 0:
            break
    _shrink_to_floors(headers, widths, _NAME_FLOORS, _excess(widths, gap, width))
    shrinkable = [i for i, h in enumerate(headers) if h in _SHRINKABLE]
    while _excess(widths, gap, width) > 0:
        candidates = [i for i in shrinkable if widths[i] > len(headers[i])]
        if not candidates:
            break
        widths[max(candidates, key=lambda i: widths[i])] -= 1
    middle = [h in _CUT_IN_THE_MIDDLE for h in headers]
    return [
        _format_row(headers, widths, [False] * len(headers), gap),
        *(_format_row(row, widths, middle, gap) for row in rows),
    ]


def _excess(widths: Sequence[int], gap: int, width: int) -> int:
    return sum(widths) + gap * (len(widths) - 1) - width


def _shrink_to_floors(
    headers: Sequence[str], widths: list[int], floors: Sequence[tuple[str, int]], excess: int
) -> None:
    """Narrow the named columns in order, each down to its floor, until `excess` is gone."""
    for header, floor in floors:
        if excess <= 0 or header not in headers:
            continue
        i = headers.index(header)
        cut = min(excess, max(0, widths[i] - max(floor, len(header))))
        widths[i] -= cut
        excess -= cut


def _format_row(
    cells: Sequence[str], widths: Sequence[int], middle: Sequence[bool], gap: int
) -> str:
    fitted = [
        _fit(cell, w, middle=m).ljust(w) for cell, w, m in zip(cells, widths, middle, strict=True)
    ]
    return (" " * gap).join(fitted).rstrip()


def _fit(text: str, width: int, *, middle: bool) -> str:
    """`text` in `width` characters: cut at the end, or in the middle, marked with "~"."""
    if len(text) <= width:
        return text
    if not middle or width < 5:
        return text[: width - 1] + "~"
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "~" + text[len(text) - tail :]


def age(timestamp: str | None, now: float) -> str:
    """How long ago an RFC 3339 `timestamp` was, kubectl-style; "-" for None."""
    if timestamp is None:
        return "-"
    since = datetime.datetime.fromisoformat(timestamp).timestamp()
    return short_age(max(0.0, now - since))


def short_age(seconds: float) -> str:
    """kubectl-style age: 45s, 12m, 5h3m, 3d4h, 400d."""
    s = int(seconds)
    days, rem = divmod(s, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days >= 10:
        return f"{days}d"
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def go_duration(seconds: float) -> str:
    """Seconds as Go's time.Duration prints them (`1m0s`), the spelling of the KubeVirt CR."""
    total = round(seconds)
    hours, rem = divmod(total, 3600)
    minutes, secs = divmod(rem, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def rfc3339(timestamp: float) -> str:
    """Unix seconds as RFC 3339 UTC with a Z, as the API server writes timestamps."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def bullet(text: str, width: int) -> list[str]:
    """A bullet wrapped to `width`, never breaking inside a name or command at a hyphen."""
    return textwrap.wrap(
        text, width, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False
    )

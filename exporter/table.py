"""Text layout for the terminal: aligned tables that fit a width, bullets, ages and durations.

Contract:
- Pure: text in, text out; no IO, no clock (`now` is passed in).
- `format_table(headers, rows, width=, hide_first=)` left-aligns columns and never cuts a cell;
  a table too wide for `width` narrows its gaps, then leaves out whole columns in the order given
  and says which (`Table.hidden`).
- `short_age`, `go_duration` and `rfc3339` spell times as kubectl, Go's time.Duration and the API
  server do.
"""

from __future__ import annotations

import datetime
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """A laid-out table: its lines, and the columns left out to fit the width."""

    lines: list[str]
    hidden: list[str]


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None,
    hide_first: Sequence[str] = (),
) -> Table:
    """Left-aligned columns; a cell is never cut (a name is what a user copies, a reason what
    they read). When the table is wider than `width` (None: no limit), the gap between columns
    narrows from two spaces to one, then the columns named in `hide_first` are left out in that
    order until it fits; what is left stays whole even if its lines are longer than `width`.
    """
    shown = list(range(len(headers)))
    natural = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    gap = 2
    if width is not None and _width(natural, shown, gap) > width:
        gap = 1
        for header in hide_first:
            if _width(natural, shown, gap) <= width:
                break
            if header in headers:
                shown.remove(headers.index(header))
    hidden = [h for i, h in enumerate(headers) if i not in shown]

    def line(cells: Sequence[str]) -> str:
        return (" " * gap).join(cells[i].ljust(natural[i]) for i in shown).rstrip()

    return Table([line(headers), *(line(row) for row in rows)], hidden)


def _width(widths: Sequence[int], shown: Sequence[int], gap: int) -> int:
    return sum(widths[i] for i in shown) + gap * (len(shown) - 1)


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

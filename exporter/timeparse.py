"""Time as the API server spells it, parsed: RFC 3339 timestamps and Go durations.

Contract: pure; each parser returns seconds, or None when the text is not what Kubernetes or Go
would accept (never a guess).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Final

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


@lru_cache(maxsize=8192)
def parse_rfc3339(text: str) -> float | None:
    """Unix seconds of an RFC 3339 timestamp (`metav1.Time` and `MicroTime`), None if it is not one.

    Cached: the same transition times recur in every update of an object.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if year < 1 or not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    seconds = float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    if match.group(7):
        seconds += float("0" + match.group(7))
    if match.group(9):
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            return None
        offset = offset_hours * 3600 + offset_minutes * 60
        seconds += -offset if match.group(9) == "+" else offset
    return seconds


#: Nanoseconds per unit of Go's `time.ParseDuration` ("µs" is U+00B5, "μs" U+03BC).
_GO_DURATION_UNITS: Final[Mapping[str, int]] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_GO_DURATION_TERM: Final = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)", re.ASCII)
_GO_DURATION_MAX_NS: Final = 2**63 - 1


def parse_go_duration(text: str) -> float | None:
    """Seconds of a Go duration string (`time.ParseDuration`: "1m0s", "1.5h", "-300ms", "0").

    None when Go would reject it (no unit, unknown unit, empty, or beyond int64 nanoseconds).
    Fractions of a nanosecond are truncated as Go does.
    """
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text[1:] if text[:1] == "+" else text)
    if body == "0":
        return 0.0
    if not body:
        return None
    total, position = 0, 0
    while position < len(body):
        match = _GO_DURATION_TERM.match(body, position)
        if match is None or (not match.group(1) and not match.group(2)):
            return None
        # Beyond 20 digits the whole part overflows int64 and further fraction digits are below
        # a nanosecond; capping them also keeps int() away from huge digit strings.
        whole, fraction, unit = match.group(1), (match.group(2) or "")[:20], match.group(3)
        if len(whole) > 20:
            return None
        scale = _GO_DURATION_UNITS[unit]
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        position = match.end()
    if total > _GO_DURATION_MAX_NS:
        return None
    return sign * total / 1e9

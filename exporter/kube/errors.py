"""What a failed request to the API server means, and when to try again.

Contract:
- `ApiFailure(result, problem, retry_after)`: a request the API server refused or that did not
  reach it. `result` is the `result` label of `list_total`/`watch_total` (403 forbidden,
  404 not_found, 410 gone, anything else error); `problem` is one line for logs and `/readyz`
  naming the kind, the namespace (or cluster-wide) and the API server's own message (a Status
  body's `message`); `retry_after` is the server's Retry-After in seconds, bounded by
  `WatchTiming.retry_after_max`, or None.
- `Backoff`: the delays between retries of a failing request (capped, fully jittered).
- `Gone`: 410, only a fresh list helps. `StreamBroken`: a watch stream ended abnormally (cut,
  undecodable, silent); resume from the last resourceVersion.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import aiohttp

from exporter.kube.api import GROUP_VERSION, Target
from exporter.settings import WatchTiming

#: The `result` label of `list_total` / `watch_total`.
Result = Literal["success", "error", "forbidden", "not_found", "gone"]


class ApiFailure(Exception):
    """A request the API server refused or that did not reach it (see the module contract)."""

    def __init__(self, result: Result, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.result: Result = result
        self.problem = problem
        self.retry_after = retry_after


class Gone(Exception):
    """410: the resourceVersion (or continue token) is too old; only a fresh list helps."""


class StreamBroken(Exception):
    """The watch stream ended abnormally (cut, undecodable, silent); resume from the last one."""


_RESULT_BY_STATUS: Mapping[int, Result] = {403: "forbidden", 404: "not_found", 410: "gone"}
_PROBLEM_WORD: Mapping[Result, str] = {
    "forbidden": "forbidden",
    "not_found": "not found",
    "gone": "gone",
    "error": "error",
    "success": "",
}


async def failure_of(
    response: aiohttp.ClientResponse, target: Target, timing: WatchTiming
) -> ApiFailure:
    """The failure a non-200 response stands for, with the API server's own message."""
    try:
        text = (await response.read()).decode("utf-8", errors="replace")
    except (aiohttp.ClientError, OSError, TimeoutError):
        text = ""
    return failure_of_status(
        response.status, _status_message(text), target, retry_after=_retry_after(response, timing)
    )


def failure_of_status(
    code: int, message: str, target: Target, *, retry_after: float | None = None
) -> ApiFailure:
    result = _RESULT_BY_STATUS.get(code, "error")
    if not message:
        message = f"HTTP {code}"
    if result == "not_found":
        message = (
            f"the API server does not serve {GROUP_VERSION} {target.resource} "
            f"in {target.where} (is KubeVirt installed?): {message}"
        )
    elif result == "error":
        message = f"HTTP {code} for {target.resource} in {target.where}: {message}"
    return ApiFailure(result, f"{_PROBLEM_WORD[result]}: {message}", retry_after)


def _status_message(text: str) -> str:
    """The `message` of a Kubernetes Status body, else the start of the body."""
    with contextlib.suppress(ValueError):
        body = json.loads(text)
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return str(body["message"])
    return text.strip()[:300]


def _retry_after(response: aiohttp.ClientResponse, timing: WatchTiming) -> float | None:
    """The Retry-After header in seconds (the API server sends delta-seconds), bounded."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), timing.retry_after_max)


def unreachable(exc: BaseException, target: Target) -> ApiFailure:
    detail = str(exc) or type(exc).__name__
    return ApiFailure("error", f"error: cannot read {target.resource} in {target.where}: {detail}")


@dataclass
class Backoff:
    """Capped exponential backoff, full jitter: delay n is uniform in [0, min(max, initial*2^n)]."""

    initial: float
    maximum: float
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call doubles the bound until the cap."""
        bound = min(self.maximum, self.initial * 2.0 ** min(self.attempt, 64))
        self.attempt += 1
        return self.rng.uniform(0.0, bound)

    def reset(self) -> None:
        """Start again from the initial bound (after a healthy period)."""
        self.attempt = 0

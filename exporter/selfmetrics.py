"""The exporter's own health: `kubevirt_update_exporter_*`, in a prometheus_client registry.

Contract:
- `SelfMetrics` holds the values of every exporter family of the metric table (names, HELP and
  labels come from `exporter.metrics`) and `render()` gives their text exposition (format 0.0.4,
  through prometheus_client's `generate_latest`, no `_created` series).
- Every label combination that can be known in advance exists from the start at 0: each
  resource for synced/objects/malformed/last event, each resource x event type (ADDED, MODIFIED,
  DELETED, BOOKMARK, ERROR) and each resource x result (success, error, forbidden, not_found,
  gone). Other values passed in are counted too, as new series.
- `set_event_loop_lag` records one measurement; the gauge shows the worst since the previous
  `render()` (one scrape interval), and `render()` starts a new interval.
- Calls are cheap (a dict update) and never raise for a known resource.
- The registry also holds prometheus_client's standard `process_*` (CPU, memory, open file
  descriptors, start time; Linux /proc) and `python_info` collectors, as every Python exporter
  serves them.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter import __version__, metrics
from exporter.metrics import Family
from exporter.model import RESOURCES, Resource

EVENT_TYPES: Final = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
RESULTS: Final = ("success", "error", "forbidden", "not_found", "gone")

Labels = tuple[str, ...]


def _zeros(*dimensions: tuple[str, ...]) -> dict[Labels, float]:
    combos: list[Labels] = [()]
    for values in dimensions:
        combos = [(*combo, value) for combo in combos for value in values]
    return dict.fromkeys(combos, 0.0)


class SelfMetrics:
    """Values of the exporter self-metrics, and their exposition; see the module contract."""

    def __init__(self, *, version: str = __version__, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._build: dict[Labels, float] = {(version, platform.python_version()): 1.0}
        self._synced = _zeros(RESOURCES)
        self._objects = _zeros(RESOURCES)
        self._events = _zeros(RESOURCES, EVENT_TYPES)
        self._lists = _zeros(RESOURCES, RESULTS)
        self._watches = _zeros(RESOURCES, RESULTS)
        self._malformed = _zeros(RESOURCES)
        self._last_event = _zeros(RESOURCES)
        self._disagreements = 0.0
        self._render_duration = 0.0
        self._lag = 0.0
        self._aborted_scrapes = 0.0
        self._refused_connections = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    # --- written by the watch loops -----------------------------------------------------------

    def list_result(self, resource: Resource, result: str) -> None:
        """Count one full list of `resource` ending with `result` (see RESULTS)."""
        _bump(self._lists, (resource, result))

    def watch_result(self, resource: Resource, result: str) -> None:
        """Count one watch request of `resource` ending with `result` (see RESULTS)."""
        _bump(self._watches, (resource, result))

    def watch_event(self, resource: Resource, event_type: str) -> None:
        """Count one watch event; also the time of the last event of `resource`."""
        _bump(self._events, (resource, event_type))
        self._last_event[(resource,)] = self._clock()

    # --- written by the Fleet -----------------------------------------------------------------

    def malformed(self, resource: Resource) -> None:
        """Count one object of `resource` that could not be read."""
        _bump(self._malformed, (resource,))

    def set_synced(self, resource: Resource, synced: bool) -> None:
        """The first full list of `resource` has (not) completed."""
        self._synced[(resource,)] = 1.0 if synced else 0.0

    def set_objects(self, resource: Resource, count: int) -> None:
        """Objects of `resource` in the cache."""
        self._objects[(resource,)] = float(count)

    def set_verdict_disagreements(self, count: int) -> None:
        """VMIs whose outdated label and image cross-check disagree now."""
        self._disagreements = float(count)

    def set_render_duration(self, seconds: float) -> None:
        """Duration of the last body assembly."""
        self._render_duration = seconds

    # --- written by the HTTP server's probe ---------------------------------------------------

    def set_event_loop_lag(self, seconds: float) -> None:
        """Record one event-loop lag measurement (the gauge keeps the worst until render)."""
        self._lag = max(self._lag, seconds)

    def scrape_aborted(self) -> None:
        """Count one /metrics response cut short because its client went away."""
        self._aborted_scrapes += 1

    def connection_refused(self) -> None:
        """Count one connection refused or evicted at the connection limit."""
        self._refused_connections += 1

    # --- read ---------------------------------------------------------------------------------

    def value(self, family: Family, labels: Labels = ()) -> float:
        """The current value of one series (for tests and the report); 0 when unknown."""
        return self._series(family).get(labels, 0.0)

    def render(self) -> bytes:
        """Text exposition of every self-metric; starts a new event-loop-lag interval."""
        text = generate_latest(self.registry)
        self._lag = 0.0
        return text

    def _series(self, family: Family) -> Mapping[Labels, float]:
        single: dict[Family, Mapping[Labels, float]] = {
            metrics.EXPORTER_BUILD_INFO: self._build,
            metrics.EXPORTER_SYNCED: self._synced,
            metrics.EXPORTER_OBJECTS: self._objects,
            metrics.EXPORTER_WATCH_EVENTS: self._events,
            metrics.EXPORTER_LIST: self._lists,
            metrics.EXPORTER_WATCH: self._watches,
            metrics.EXPORTER_MALFORMED: self._malformed,
            metrics.EXPORTER_LAST_EVENT: self._last_event,
            metrics.EXPORTER_VERDICT_DISAGREEMENTS: {(): self._disagreements},
            metrics.EXPORTER_RENDER_DURATION: {(): self._render_duration},
            metrics.EXPORTER_EVENT_LOOP_LAG: {(): self._lag},
            metrics.EXPORTER_ABORTED_SCRAPES: {(): self._aborted_scrapes},
            metrics.EXPORTER_REFUSED_CONNECTIONS: {(): self._refused_connections},
        }
        return single[family]

    def families(self) -> Iterator[Metric]:
        """prometheus_client metric families of every self-metric, in table order."""
        for family in metrics.FAMILIES:
            if family.group != "exporter":
                continue
            kind = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
            metric = kind(family.name, family.help, labels=family.labels)
            for labels, value in self._series(family).items():
                metric.add_metric(list(labels), value)
            yield metric


def _bump(series: dict[Labels, float], labels: Labels) -> None:
    series[labels] = series.get(labels, 0.0) + 1.0


class _Collector:
    """Adapts SelfMetrics to prometheus_client's collector protocol."""

    def __init__(self, owner: SelfMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        return self._owner.families()

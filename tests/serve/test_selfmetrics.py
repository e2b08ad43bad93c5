"""SelfMetrics: the exporter's own health series, present from the start."""

from __future__ import annotations

import platform
import time

from exporter import __version__, metrics
from exporter.model import RESOURCES
from exporter.selfmetrics import EVENT_TYPES, RESULTS, SelfMetrics
from tests import REPO
from tests.exposition import as_dict, label_sets, parse

#: prometheus_client's ProcessCollector (Linux /proc) and PlatformCollector families.
STANDARD_FAMILIES = (
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "python_info",
)


def test_every_knowable_series_exists_at_zero_from_the_start() -> None:
    got = parse(SelfMetrics().render())
    resources = {(r,) for r in RESOURCES}
    assert label_sets(got.of("kubevirt_update_exporter_synced"), "resource") == resources
    assert label_sets(got.of("kubevirt_update_exporter_objects"), "resource") == resources
    assert (
        label_sets(got.of("kubevirt_update_exporter_malformed_objects_total"), "resource")
        == resources
    )
    assert label_sets(
        got.of("kubevirt_update_exporter_watch_events_total"), "resource", "type"
    ) == {(r, t) for r in RESOURCES for t in EVENT_TYPES}
    for family in ("kubevirt_update_exporter_list_total", "kubevirt_update_exporter_watch_total"):
        assert label_sets(got.of(family), "resource", "result") == {
            (r, result) for r in RESOURCES for result in RESULTS
        }
    assert {
        s.value
        for s in got.samples
        if s.name.startswith("kubevirt_update_exporter_")
        and s.name != "kubevirt_update_exporter_build_info"
    } == {0}


def test_the_families_are_those_of_the_table_with_its_help_and_no_created_series() -> None:
    got = parse(SelfMetrics().render())
    table = [f for f in metrics.FAMILIES if f.group == "exporter"]
    ours = [name for name in got.families if name.startswith("kubevirt_update_")]
    assert ours == [f.name for f in table]
    assert set(got.families) - set(ours) == set(STANDARD_FAMILIES)
    for family in table:
        assert got.families[family.name] == (family.type, family.help)
    assert not [s for s in got.samples if s.name.endswith("_created")]


def test_build_info_names_the_version_and_the_interpreter() -> None:
    (info,) = parse(SelfMetrics().render()).of("kubevirt_update_exporter_build_info")
    assert (info.label("version"), info.label("python_version"), info.value) == (
        __version__,
        platform.python_version(),
        1,
    )


def test_counters_count_and_a_watch_event_stamps_its_resource() -> None:
    now = [1000.0]
    selfmetrics = SelfMetrics(clock=lambda: now[0])
    selfmetrics.list_result("virtualmachines", "forbidden")
    selfmetrics.list_result("virtualmachines", "forbidden")
    selfmetrics.watch_result("kubevirts", "gone")
    selfmetrics.watch_event("virtualmachineinstances", "MODIFIED")
    now[0] = 1234.5
    selfmetrics.watch_event("virtualmachineinstances", "BOOKMARK")
    selfmetrics.malformed("virtualmachineinstancemigrations")
    got = parse(selfmetrics.render())
    lists = as_dict(got.of("kubevirt_update_exporter_list_total"), "resource", "result")
    assert lists[("virtualmachines", "forbidden")] == 2
    assert sum(lists.values()) == 2
    watches = as_dict(got.of("kubevirt_update_exporter_watch_total"), "resource", "result")
    assert watches[("kubevirts", "gone")] == 1
    events = as_dict(got.of("kubevirt_update_exporter_watch_events_total"), "resource", "type")
    assert events[("virtualmachineinstances", "MODIFIED")] == 1
    assert events[("virtualmachineinstances", "BOOKMARK")] == 1
    stamps = as_dict(got.of("kubevirt_update_exporter_last_event_timestamp_seconds"), "resource")
    assert stamps == {
        ("virtualmachineinstances",): 1234.5,
        ("virtualmachines",): 0,
        ("virtualmachineinstancemigrations",): 0,
        ("kubevirts",): 0,
    }
    malformed = as_dict(got.of("kubevirt_update_exporter_malformed_objects_total"), "resource")
    assert malformed[("virtualmachineinstancemigrations",)] == 1


def test_an_unforeseen_result_is_counted_as_a_new_series() -> None:
    selfmetrics = SelfMetrics()
    selfmetrics.watch_result("virtualmachines", "timeout")
    watches = as_dict(
        parse(selfmetrics.render()).of("kubevirt_update_exporter_watch_total"), "resource", "result"
    )
    assert watches[("virtualmachines", "timeout")] == 1


def test_event_loop_lag_shows_the_worst_since_the_previous_scrape() -> None:
    selfmetrics = SelfMetrics()
    for lag in (0.01, 0.2, 0.05):
        selfmetrics.set_event_loop_lag(lag)
    lag_family = "kubevirt_update_exporter_event_loop_lag_seconds"
    assert parse(selfmetrics.render()).of(lag_family)[0].value == 0.2
    selfmetrics.set_event_loop_lag(0.03)
    assert parse(selfmetrics.render()).of(lag_family)[0].value == 0.03
    assert parse(selfmetrics.render()).of(lag_family)[0].value == 0


def test_gauges_set_by_the_fleet_show_their_last_value() -> None:
    selfmetrics = SelfMetrics()
    selfmetrics.set_synced("kubevirts", True)
    selfmetrics.set_objects("virtualmachines", 12)
    selfmetrics.set_verdict_disagreements(3)
    selfmetrics.set_render_duration(0.25)
    got = parse(selfmetrics.render())
    assert as_dict(got.of("kubevirt_update_exporter_synced"), "resource")[("kubevirts",)] == 1
    objects = as_dict(got.of("kubevirt_update_exporter_objects"), "resource")
    assert objects[("virtualmachines",)] == 12
    assert got.of("kubevirt_update_exporter_verdict_disagreements")[0].value == 3
    assert got.of("kubevirt_update_exporter_render_duration_seconds")[0].value == 0.25


def test_the_standard_process_and_python_families_describe_this_process() -> None:
    got = parse(SelfMetrics().render())
    (rss,) = got.of("process_resident_memory_bytes")
    (start,) = got.of("process_start_time_seconds")
    (info,) = got.of("python_info")
    (open_fds,) = got.of("process_open_fds")
    assert rss.value > 1 << 20
    assert 0 < start.value <= time.time()
    assert open_fds.value >= 3
    assert (info.label("implementation"), info.label("version"), info.value) == (
        platform.python_implementation(),
        platform.python_version(),
        1,
    )
    # Documented beside the project's own families.
    doc = (REPO / "METRICS.md").read_text()
    for family in STANDARD_FAMILIES:
        assert f"`{family}`" in doc

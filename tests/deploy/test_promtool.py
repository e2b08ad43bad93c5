"""The real `promtool check metrics` accepts what the exporter serves (identity and gzip)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from exporter.fleet import Fleet
from exporter.metrics import MetricFilter
from exporter.model import Resource
from exporter.objects import Scope
from exporter.selfmetrics import SelfMetrics
from tests import builders

VMI: Resource = "virtualmachineinstances"


def promtool() -> str:
    """The promtool binary; its absence fails the test (never skips it)."""
    found = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(found).exists():
        pytest.fail("promtool is not installed (apt-get install prometheus)")
    return found


def check(body: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "check", "metrics"],
        input=body.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def varied_fleet(allow: MetricFilter | None = None) -> Fleet:
    """Every family with series: outdated, not migratable, failing migrations, odd label values."""
    selfmetrics = SelfMetrics()
    fleet = Fleet(scope=Scope(), metrics=selfmetrics, allow=allow)
    fleet.apply("kubevirts", "ADDED", builders.kubevirt(hco=True, update_methods=("Evict",)))
    fleet.apply(VMI, "ADDED", builders.vmi("ok"))
    fleet.apply(VMI, "ADDED", builders.vmi("old", launcher_image=builders.OLD_IMAGE))
    fleet.apply(VMI, "ADDED", builders.vmi("cpu", changes=("HotVCPUChange",)))
    fleet.apply(
        VMI,
        "ADDED",
        builders.vmi(
            "stuck",
            namespace="other",
            outdated_label=True,
            live_migratable=False,
            not_migratable_reason='Odd "reason" \\ with\nnewline',
            node='node "7"',
            owner_vm=None,
        ),
    )
    fleet.apply(VMI, "ADDED", builders.vmi("new", phase="Pending", launcher_image=None))
    for name in ("ok", "old", "cpu", "new"):
        fleet.apply("virtualmachines", "ADDED", builders.vm(name))
    fleet.apply(
        "virtualmachineinstancemigrations",
        "ADDED",
        builders.vmim("m", vmi_name="old", phase="Failed", workload_update=True),
    )
    selfmetrics.watch_event(VMI, "ADDED")
    selfmetrics.list_result(VMI, "success")
    selfmetrics.set_event_loop_lag(0.012)
    return fleet


def test_promtool_accepts_the_plain_body() -> None:
    done = check(varied_fleet().body())
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_promtool_accepts_the_gzip_body_once_decompressed() -> None:
    done = check(gzip.decompress(varied_fleet().body_gzip()))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_promtool_accepts_a_filtered_body() -> None:
    deny = MetricFilter.parse(denylist="kubevirt_update_vmi_.*")
    done = check(varied_fleet(deny).body())
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_promtool_does_reject_a_broken_exposition() -> None:
    """The check above can fail: promtool flags a counter without `_total`."""
    broken = b"# HELP things Things.\n# TYPE things counter\nthings 1\n"
    done = check(broken)
    assert done.returncode != 0
    assert "_total" in done.stdout + done.stderr

"""No value taken from an object can change what `plan` and `report` output means.

`plan | kubectl create -f -` runs with admin rights: whatever a VMI's name, namespace, node,
condition reason or run strategy holds (a snapshot file can hold anything), the plan parses to
exactly its VirtualMachineInstanceMigrations and every other line stays a comment. The report's
JSON and YAML parse back to exactly the document.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import report
from exporter.model import ACTIONS, ControlPlane, KubeVirt, VmiView
from exporter.plan import build_plan, migration_manifest, render_plan
from tests.cli.test_report import NOW, control_plane, kubevirt, view

#: Values that broke out of a comment, or would if escaping missed a case.
HOSTILE = (
    "X\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: injected-by-reason\n"
    "  namespace: default\n---",
    "---",
    "...",
    "# not a comment\n#",
    "a\rkind: Secret",
    "line\x85next",
    "line\u2028separator\u2029paragraph",
    "\x1b[2J\x1b]0;title\x07",
    "\u202egnp.exe",
    "\ud800lone surrogate",
    "\x00\x7f\x9f\ufeff\ufffe",
    "  - item\n- other: 1",
    "\"quoted\" 'single' {flow: [1]} &anchor *alias !tag %directive @ `",
)

hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=3).map("".join),
)


@st.composite
def views(draw: st.DrawFn) -> VmiView:
    return view(
        draw(hostile_text),
        draw(hostile_text),
        node=draw(hostile_text),
        run_strategy=draw(hostile_text),
        eviction_strategy=draw(hostile_text),
        launcher_image=draw(hostile_text),
        phase=draw(st.sampled_from(["Running", draw(hostile_text)])),
        owner_kind=draw(st.sampled_from(["VirtualMachine", "", draw(hostile_text)])),
        live_migratable=draw(st.booleans()),
        not_migratable_reason=draw(st.one_of(st.none(), hostile_text)),
        method="none",
        action=draw(st.sampled_from(ACTIONS)),
    )


@st.composite
def control_planes(draw: st.DrawFn) -> tuple[ControlPlane, list[KubeVirt]]:
    cr = kubevirt(
        namespace=draw(hostile_text),
        name=draw(hostile_text),
        methods=draw(st.sampled_from([(), ("LiveMigrate",), ("LiveMigrate", "Evict")])),
        hco=draw(st.booleans()),
        phase=draw(st.sampled_from(["Deployed", draw(hostile_text)])),
    )
    return control_plane(cr), [cr]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=st.lists(views(), max_size=8), plane=control_planes(), size=st.integers(1, 3))
def test_the_plan_parses_to_exactly_its_migrations_whatever_the_objects_hold(
    fleet: list[VmiView], plane: tuple[ControlPlane, list[KubeVirt]], size: int
) -> None:
    plan = build_plan(fleet, plane[0], [], batch_size=size, now=NOW)
    text = render_plan(plan)
    text.encode("utf-8")  # printable to any pipe: no lone surrogate reaches stdout
    manifests = [
        migration_manifest(vmi, batch=number)
        for number, batch in enumerate(plan.batches, start=1)
        for vmi in batch
    ]
    assert [doc for doc in yaml.safe_load_all(text) if doc is not None] == manifests
    # Every line is a comment, a separator, or a line of one of those manifests: nothing else.
    separators = ("", "---")
    outside = [ln for ln in text.splitlines() if not ln.startswith("#") and ln not in separators]
    dumped = [yaml.safe_dump(doc, sort_keys=False) for doc in manifests]
    assert outside == [ln for doc in dumped for ln in doc.splitlines() if ln not in separators]
    assert sum(ln == "---" for ln in text.splitlines()) == len(manifests)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=st.lists(views(), max_size=6), plane=control_planes(), preflight=st.booleans())
def test_report_json_and_yaml_parse_back_to_exactly_the_document(
    fleet: list[VmiView], plane: tuple[ControlPlane, list[KubeVirt]], preflight: bool
) -> None:
    doc = report.build_report(fleet, plane[0], kubevirts=plane[1], preflight=preflight, now=NOW)
    as_json, as_yaml = report.render_json(doc), report.render_yaml(doc)
    as_json.encode("utf-8")
    as_yaml.encode("utf-8")
    expected: dict[str, Any] = dict(doc)
    assert json.loads(as_json) == expected
    assert yaml.safe_load(as_yaml) == expected


def test_the_reported_injection_stays_a_comment() -> None:
    """The probe's case: a LiveMigratable reason that ends the comment and starts a ConfigMap."""
    stuck = view(
        "db-0",
        "prod",
        live_migratable=False,
        not_migratable_reason=HOSTILE[0],
        method="none",
        action="restart",
    )
    text = render_plan(build_plan([stuck], control_plane(), [], now=NOW))
    assert [doc for doc in yaml.safe_load_all(text) if doc is not None] == []
    assert "# virtctl restart db-0 -n prod    # X apiVersion: v1 kind: ConfigMap" in text

"""RenderStore: what a set of VMI views looks like on /metrics, and how it follows changes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import metrics
from exporter.derive import control_plane
from exporter.identity import escape_label_value
from exporter.metrics import FAMILIES, MetricFilter
from exporter.model import ACTIONS, METHODS, OUTDATED_REASONS, KubeVirt, VmiView
from exporter.objects import project_kubevirt
from exporter.render import RenderStore, format_value
from tests import builders
from tests.exposition import Exposition, as_dict, label_sets, parse, series

OLD = "quay.io/kubevirt/virt-launcher:v1.4.0"
NEW = "quay.io/kubevirt/virt-launcher:v1.5.0"


def view(name: str = "vm-1", namespace: str = "ns-a", **changes: Any) -> VmiView:
    """A Running, live-migratable, up-to-date VMI owned by a VM (Always), unless changed."""
    return builders.view(name, namespace, **{"launcher_image": NEW, **changes})


def outdated(name: str = "vm-1", namespace: str = "ns-a", **changes: object) -> VmiView:
    """An outdated VMI (old launcher image) the updater will live-migrate."""
    fields: dict[str, object] = {
        "launcher_image": OLD,
        "outdated": True,
        "outdated_reason": "launcher_image",
        "outdated_since": 1727769600.0,
    }
    fields.update(changes)
    return view(name, namespace, **fields)


def kubevirt(**kwargs: Any) -> KubeVirt:
    return project_kubevirt(builders.kubevirt(**kwargs))


def converged_store(*views: VmiView, **kwargs: Any) -> RenderStore:
    store = RenderStore(**kwargs)
    kv = kubevirt()
    store.set_kubevirts([kv], control_plane([kv]))
    for v in views:
        store.put(v)
    return store


def exposition(store: RenderStore) -> Exposition:
    return parse(store.body())


def per_vmi(text: Exposition) -> set[tuple[str, frozenset[tuple[str, str]], float]]:
    return {t for t in text.series() if t[0].startswith("kubevirt_update_vmi_")}


def test_golden_exposition_of_a_small_fleet() -> None:
    store = converged_store(
        view("ok"),
        outdated("old", update_migration_failures=2),
        view(
            "pinned",
            namespace="ns-b",
            node="node-2",
            owner_kind="",
            run_strategy="",
            eviction_strategy="LiveMigrate",
            live_migratable=False,
            not_migratable_reason="DisksNotLiveMigratable",
            method="none",
            action="manual",
        ),
        view("pending", phase="Pending", node="", launcher_image=""),
    )
    got = exposition(store)

    info = "kubevirt_update_vmi_info"
    common = {"owner_kind": "VirtualMachine", "run_strategy": "Always", "eviction_strategy": "None"}
    expected = {
        series(info, 1, namespace="ns-a", name="ok", node="node-1", **common),
        series(info, 1, namespace="ns-a", name="old", node="node-1", **common),
        series(info, 1, namespace="ns-b", name="pinned", node="node-2", owner_kind="",
               run_strategy="", eviction_strategy="LiveMigrate"),
        series(info, 1, namespace="ns-a", name="pending", node="", **common),
        series("kubevirt_update_vmi_outdated", 0, namespace="ns-a", name="ok"),
        series("kubevirt_update_vmi_outdated", 1, namespace="ns-a", name="old"),
        series("kubevirt_update_vmi_outdated", 0, namespace="ns-b", name="pinned"),
        series("kubevirt_update_vmi_outdated", 0, namespace="ns-a", name="pending"),
        series("kubevirt_update_vmi_live_migratable", 1, namespace="ns-a", name="ok"),
        series("kubevirt_update_vmi_live_migratable", 1, namespace="ns-a", name="old"),
        series("kubevirt_update_vmi_live_migratable", 0, namespace="ns-b", name="pinned"),
        series("kubevirt_update_vmi_live_migratable", 1, namespace="ns-a", name="pending"),
        series("kubevirt_update_vmi_outdated_reason", 1, namespace="ns-a", name="old",
               reason="launcher_image"),
        series("kubevirt_update_vmi_not_live_migratable", 1, namespace="ns-b", name="pinned",
               reason="DisksNotLiveMigratable"),
        series("kubevirt_update_vmi_update_state", 1, namespace="ns-a", name="old",
               method="live_migrate", action="wait"),
        series("kubevirt_update_vmi_outdated_since_timestamp_seconds", 1727769600,
               namespace="ns-a", name="old"),
        series("kubevirt_update_vmi_update_migration_failures", 2, namespace="ns-a", name="old"),
        series("kubevirt_update_outdated_vmis", 1, namespace="ns-a", reason="launcher_image",
               method="live_migrate", action="wait"),
        series("kubevirt_update_vmis", 3, namespace="ns-a"),
        series("kubevirt_update_vmis", 1, namespace="ns-b"),
        series("kubevirt_update_not_live_migratable_vmis", 1, namespace="ns-b",
               reason="DisksNotLiveMigratable"),
        series("kubevirt_update_vmis_by_launcher_image", 2, image=NEW),
        series("kubevirt_update_vmis_by_launcher_image", 1, image=OLD),
        series("kubevirt_update_kubevirt_info", 1, namespace="kubevirt", name="kubevirt",
               observed_version="v1.5.0", target_version="v1.5.0",
               target_launcher_image=builders.TARGET_IMAGE, managed_by=""),
        series("kubevirt_update_kubevirt_converged", 1, namespace="kubevirt", name="kubevirt"),
        series("kubevirt_update_kubevirt_method_enabled", 1, namespace="kubevirt",
               name="kubevirt", method="LiveMigrate"),
        series("kubevirt_update_kubevirt_method_enabled", 0, namespace="kubevirt",
               name="kubevirt", method="Evict"),
        series("kubevirt_update_kubevirt_batch_eviction_size", 10, namespace="kubevirt",
               name="kubevirt"),
        series("kubevirt_update_kubevirt_batch_eviction_interval_seconds", 60,
               namespace="kubevirt", name="kubevirt"),
        series("kubevirt_update_kubevirt_reported_outdated_vmis", 0, namespace="kubevirt",
               name="kubevirt"),
        series("kubevirt_update_kubevirt_crs", 1),
    }  # fmt: skip
    assert got.series() == expected


def test_every_served_family_has_help_and_type_once_in_table_order() -> None:
    got = exposition(converged_store(view(), outdated("b")))
    expected = [f for f in FAMILIES if f.group != "exporter"]
    assert list(got.families) == [f.name for f in expected]
    for family in expected:
        kind, help_text = got.families[family.name]
        assert kind == family.type
        assert help_text == family.help


def test_label_values_are_escaped_and_read_back_unchanged() -> None:
    odd = 'we"ird\\node\nline'
    store = converged_store(view(node=odd, not_migratable_reason=odd, live_migratable=False))
    got = exposition(store)
    (info,) = got.of("kubevirt_update_vmi_info")
    assert info.label("node") == odd
    (reason,) = got.of("kubevirt_update_vmi_not_live_migratable")
    assert reason.label("reason") == odd
    assert escape_label_value(odd) == 'we\\"ird\\\\node\\nline'


def test_a_removed_vmi_leaves_no_series_and_leaves_the_aggregates() -> None:
    store = converged_store(view("stay"), outdated("gone", update_migration_failures=1))
    assert store.remove(("ns-a", "gone"))
    got = exposition(store)
    assert not [s for s in got.samples if s.label("name") == "gone"]
    assert got.of("kubevirt_update_outdated_vmis") == []
    assert as_dict(got.of("kubevirt_update_vmis"), "namespace") == {("ns-a",): 1}
    assert store.remove(("ns-a", "gone")) is False


def test_dense_series_keep_their_label_set_whatever_the_value() -> None:
    store = converged_store(view())
    dense = ("kubevirt_update_vmi_outdated", "kubevirt_update_vmi_live_migratable")
    before = {name: exposition(store).of(name) for name in dense}
    store.put(outdated(live_migratable=False, not_migratable_reason="HostDeviceNotLiveMigratable"))
    after = {name: exposition(store).of(name) for name in dense}
    for name in dense:
        assert [s.labels for s in before[name]] == [s.labels for s in after[name]]
        assert [s.value for s in before[name]] != [s.value for s in after[name]]


def test_sparse_series_exist_only_while_their_condition_holds() -> None:
    store = converged_store(view())
    sparse = [f.name for f in FAMILIES if f.group == "vmi_sparse"]
    assert all(exposition(store).of(name) == [] for name in sparse)
    store.put(
        outdated(
            live_migratable=False,
            not_migratable_reason="SEVNotLiveMigratable",
            update_migration_failures=3,
        )
    )
    assert all(len(exposition(store).of(name)) == 1 for name in sparse)
    store.put(view())
    assert all(exposition(store).of(name) == [] for name in sparse)


def test_outdated_since_is_left_out_while_unknown() -> None:
    got = exposition(converged_store(outdated(outdated_since=None)))
    assert got.of("kubevirt_update_vmi_outdated_since_timestamp_seconds") == []
    assert len(got.of("kubevirt_update_vmi_outdated_reason")) == 1


def test_a_view_showing_nothing_new_renders_nothing() -> None:
    store = converged_store(view())
    renders, generation, chunks = store.renders, store.generation, store.chunks()
    # Different view (migrating flips), same series: nothing to render.
    assert store.put(view(migrating=True)) is False
    assert store.put(view()) is False
    assert (store.renders, store.generation) == (renders, generation)
    assert store.chunks() is chunks


def test_a_changed_view_renders_once_and_only_its_families() -> None:
    store = converged_store(view("a"), view("b"))
    before = store.chunks()
    assert store.put(view("a", node="node-9")) is True
    assert store.renders == 3
    after = store.chunks()
    index = {f.name: 2 * i + 1 for i, f in enumerate(f for f in FAMILIES if f.group != "exporter")}
    assert after[index["kubevirt_update_vmi_info"]] != before[index["kubevirt_update_vmi_info"]]
    # The dense outdated family did not change, so its cached text was reused as is.
    assert (
        after[index["kubevirt_update_vmi_outdated"]]
        is before[index["kubevirt_update_vmi_outdated"]]
    )


def test_outdated_aggregate_holds_its_value_while_not_converged() -> None:
    store = converged_store(outdated("a"), view("b"))
    counts = {("ns-a", "launcher_image", "live_migrate", "wait"): 1.0}
    aggregate = "kubevirt_update_outdated_vmis"
    names = ("namespace", "reason", "method", "action")
    assert as_dict(exposition(store).of(aggregate), *names) == counts

    updating = kubevirt(target_deployment_id="deploy-next")
    store.set_kubevirts([updating], control_plane([updating]))
    store.put(outdated("b"))
    store.put(outdated("c"))
    store.remove(("ns-a", "a"))
    held = exposition(store)
    assert as_dict(held.of(aggregate), *names) == counts
    # Per-VMI series and the other aggregates stay live.
    assert as_dict(held.of("kubevirt_update_vmis"), "namespace") == {("ns-a",): 2}
    assert len(held.of("kubevirt_update_vmi_outdated_reason")) == 2

    done = kubevirt()
    store.set_kubevirts([done], control_plane([done]))
    expected = {("ns-a", "launcher_image", "live_migrate", "wait"): 2.0}
    assert as_dict(exposition(store).of(aggregate), *names) == expected


def test_outdated_aggregate_has_no_series_before_the_first_convergence() -> None:
    store = RenderStore()
    store.put(outdated())
    assert exposition(store).of("kubevirt_update_outdated_vmis") == []
    assert len(exposition(store).of("kubevirt_update_vmi_outdated_reason")) == 1


def test_kubevirt_series_say_who_manages_the_cr_and_which_methods_are_on() -> None:
    kv = kubevirt(hco=True, update_methods=("Evict",), batch_eviction_size=3,
                  batch_eviction_interval="1m30s", reported_outdated=7)  # fmt: skip
    store = RenderStore()
    store.set_kubevirts([kv], control_plane([kv]))
    got = exposition(store)
    (info,) = got.of("kubevirt_update_kubevirt_info")
    assert info.label("managed_by") == "hco"
    methods = as_dict(got.of("kubevirt_update_kubevirt_method_enabled"), "method")
    assert methods == {("LiveMigrate",): 0, ("Evict",): 1}
    assert got.of("kubevirt_update_kubevirt_batch_eviction_size")[0].value == 3
    assert got.of("kubevirt_update_kubevirt_batch_eviction_interval_seconds")[0].value == 90
    assert got.of("kubevirt_update_kubevirt_reported_outdated_vmis")[0].value == 7
    assert got.of("kubevirt_update_kubevirt_crs")[0].value == 1


def test_a_scoped_exporter_does_not_export_the_reported_count() -> None:
    kv = kubevirt(reported_outdated=7)
    store = RenderStore(scoped=True)
    store.set_kubevirts([kv], control_plane([kv]))
    got = exposition(store)
    assert got.of("kubevirt_update_kubevirt_reported_outdated_vmis") == []
    assert len(got.of("kubevirt_update_kubevirt_info")) == 1


def test_two_kubevirt_crs_are_counted_and_both_described() -> None:
    first, second = kubevirt(name="a"), kubevirt(name="b", target_deployment_id="other")
    store = RenderStore()
    store.set_kubevirts([second, first], control_plane([first, second]))
    got = exposition(store)
    assert got.of("kubevirt_update_kubevirt_crs")[0].value == 2
    converged = as_dict(got.of("kubevirt_update_kubevirt_converged"), "name")
    assert converged == {("a",): 1, ("b",): 0}


def test_only_shard_zero_emits_per_kubevirt_families() -> None:
    store = converged_store(view(), emit_kubevirt_series=False)
    got = exposition(store)
    assert not [name for name in got.families if name.startswith("kubevirt_update_kubevirt_")]
    assert "kubevirt_update_vmi_info" in got.families


def test_denylist_drops_per_vmi_families_but_never_the_aggregates() -> None:
    deny = MetricFilter.parse(denylist="kubevirt_update_vmi_.*,kubevirt_update_.*vmis.*")
    got = exposition(converged_store(outdated(), metric_filter=deny))
    assert not [name for name in got.families if name.startswith("kubevirt_update_vmi_")]
    aggregates = {f.name for f in FAMILIES if f.group == "aggregate"}
    assert aggregates <= set(got.families)
    assert len(got.of("kubevirt_update_outdated_vmis")) == 1


def test_allowlist_keeps_only_whole_name_matches_and_the_aggregates() -> None:
    allow = MetricFilter.parse(allowlist="kubevirt_update_vmi_outdated")
    got = exposition(converged_store(outdated(), metric_filter=allow))
    aggregates = [f.name for f in FAMILIES if f.group == "aggregate"]
    # `kubevirt_update_vmi_outdated` does not match `..._outdated_reason` (whole-name match).
    assert list(got.families) == ["kubevirt_update_vmi_outdated", *aggregates]


@pytest.mark.parametrize(
    ("allow", "deny", "message"),
    [
        ("a", "b", "mutually exclusive"),
        ("kubevirt_update_(", "", "--metric-allowlist: 'kubevirt_update_(' is not a regular"),
        ("", "[z-a]", "--metric-denylist: '[z-a]' is not a regular"),
    ],
)
def test_metric_filter_rejects_bad_flags_naming_them(allow: str, deny: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MetricFilter.parse(allowlist=allow, denylist=deny)


def test_metric_filter_ignores_blank_patterns() -> None:
    assert MetricFilter.parse(allowlist=" , ,") == MetricFilter()
    assert MetricFilter.of(deny=["kubevirt_update_vmi_info", ""]).admits(metrics.VMI_INFO) is False


def test_values_are_written_as_the_text_format_reads_them() -> None:
    assert [format_value(v) for v in (1, 0, 2.5, 1727769600.0, float("nan"))] == [
        "1",
        "0",
        "2.5",
        "1727769600",
        "NaN",
    ]
    assert format_value(float("inf")) == "+Inf"
    assert format_value(1e20) == "1e+20"


_views = st.builds(
    lambda ns, name, out, reason, method, action, live, node, failures, since, phase: view(
        name,
        ns,
        outdated=out,
        outdated_reason=reason if out else None,
        method=method,
        action=action,
        live_migratable=live,
        not_migratable_reason=None if live else "DisksNotLiveMigratable",
        node=node,
        update_migration_failures=failures,
        outdated_since=since if out else None,
        phase=phase,
    ),
    st.sampled_from(["ns-a", "ns-b"]),
    st.sampled_from(["v1", "v2", "v3", "v4"]),
    st.booleans(),
    st.sampled_from(OUTDATED_REASONS),
    st.sampled_from(METHODS),
    st.sampled_from(ACTIONS),
    st.booleans(),
    st.sampled_from(["node-1", "node-2", 'n"3']),
    st.integers(min_value=0, max_value=2),
    st.sampled_from([None, 1.0, 2.5]),
    st.sampled_from(["Running", "Pending", "Succeeded"]),
)
_steps = st.lists(st.one_of(_views, st.tuples(st.sampled_from(["ns-a", "ns-b"]), st.sampled_from(
    ["v1", "v2", "v3", "v4"]))), max_size=40)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(steps=_steps)
def test_incremental_rendering_equals_rendering_from_scratch(
    steps: Sequence[VmiView | tuple[str, str]],
) -> None:
    incremental = converged_store()
    final: dict[tuple[str, str], VmiView] = {}
    for step in steps:
        if isinstance(step, VmiView):
            incremental.put(step)
            final[(step.namespace, step.name)] = step
            incremental.chunks()  # interleave reads with writes, as scrapes do
        else:
            incremental.remove(step)
            final.pop(step, None)
    scratch = converged_store(*final.values())
    assert exposition(incremental).series() == exposition(scratch).series()
    assert len(incremental) == len(final)


def test_not_migratable_vmis_without_a_reason_count_as_condition_missing() -> None:
    got = exposition(converged_store(view(live_migratable=False, not_migratable_reason=None)))
    assert label_sets(got.of("kubevirt_update_vmi_not_live_migratable"), "reason") == {
        ("ConditionMissing",)
    }

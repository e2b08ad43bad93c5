"""Fleet: events in, /metrics and views out (projection, scope, relists, re-rendering, sync)."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from structlog.testing import capture_logs

from exporter import fleet as fleet_module
from exporter import metrics
from exporter.derive import derive
from exporter.fleet import Fleet, GzipHead
from exporter.model import Resource
from exporter.objects import Scope, project_vm, project_vmi
from exporter.selectors import LabelSelector
from exporter.selfmetrics import SelfMetrics
from tests import builders
from tests.exposition import SELF_METRICS, Exposition, as_dict, parse

VMI: Resource = "virtualmachineinstances"
VM: Resource = "virtualmachines"
VMIM: Resource = "virtualmachineinstancemigrations"
KV: Resource = "kubevirts"
NS = builders.NAMESPACE


def make(scope: Scope | None = None, **kwargs: Any) -> tuple[Fleet, SelfMetrics]:
    selfmetrics = SelfMetrics()
    return Fleet(scope=scope or Scope(), metrics=selfmetrics, **kwargs), selfmetrics


def populated(*names: str, **kwargs: Any) -> tuple[Fleet, SelfMetrics]:
    fleet, selfmetrics = make(**kwargs)
    fleet.apply(KV, "ADDED", builders.kubevirt())
    for name in names:
        fleet.apply(VMI, "ADDED", builders.vmi(name))
        fleet.apply(VM, "ADDED", builders.vm(name))
    return fleet, selfmetrics


def text(fleet: Fleet) -> Exposition:
    return parse(fleet.body())


def names_in(fleet: Fleet, family: str = "kubevirt_update_vmi_info") -> set[str]:
    return {s.label("name") for s in text(fleet).of(family)}


def test_added_objects_show_up_and_a_deleted_vmi_takes_its_series_along() -> None:
    fleet, _ = populated("a", "b")
    fleet.apply(VMI, "MODIFIED", builders.vmi("b", launcher_image=builders.OLD_IMAGE))
    assert names_in(fleet) == {"a", "b"}
    assert names_in(fleet, "kubevirt_update_vmi_outdated_reason") == {"b"}
    fleet.apply(VMI, "DELETED", builders.vmi("b", launcher_image=builders.OLD_IMAGE))
    got = text(fleet)
    assert {s.label("name") for s in got.samples if s.name.startswith("kubevirt_update_vmi_")} == {
        "a"
    }
    assert got.of("kubevirt_update_outdated_vmis") == []


def test_views_are_derived_from_the_records_in_key_order() -> None:
    fleet, _ = populated("b", "a")
    cp = fleet.control_plane
    expected = [
        derive(project_vmi(builders.vmi(n)), vm=project_vm(builders.vm(n)), migrations=(), cp=cp)
        for n in ("a", "b")
    ]
    assert fleet.views() == expected


def test_a_malformed_object_is_counted_logged_and_the_known_record_kept() -> None:
    fleet, selfmetrics = populated("a")
    before = fleet.views()
    broken = builders.vmi("a", launcher_image=builders.OLD_IMAGE)
    broken["status"]["phase"] = 42
    with capture_logs() as logs:
        fleet.apply(VMI, "MODIFIED", broken)
    assert fleet.views() == before
    assert selfmetrics.value(metrics.EXPORTER_MALFORMED, (VMI,)) == 1
    (event,) = [e for e in logs if e["event"] == "object.malformed"]
    assert event["log_level"] == "warning"
    assert event["error"] == (
        "virtualmachineinstances default/a: status.phase: expected a string, got integer"
    )


def test_a_deleted_event_without_a_name_is_malformed_not_fatal() -> None:
    fleet, selfmetrics = populated("a")
    fleet.apply(VMI, "DELETED", {"metadata": {"namespace": NS}})
    assert names_in(fleet) == {"a"}
    assert selfmetrics.value(metrics.EXPORTER_MALFORMED, (VMI,)) == 1


def test_objects_outside_the_namespaces_are_ignored() -> None:
    fleet, _ = make(Scope(namespaces=frozenset({"team"})))
    fleet.apply(VMI, "ADDED", builders.vmi("mine", namespace="team"))
    fleet.apply(VMI, "ADDED", builders.vmi("theirs", namespace="other"))
    fleet.apply(VM, "ADDED", builders.vm("theirs", namespace="other"))
    assert names_in(fleet) == {"mine"}


def test_a_vmi_that_stops_matching_the_label_selector_is_dropped() -> None:
    fleet, _ = make(Scope(label_selector=LabelSelector.parse("tier=gold")))
    fleet.apply(VMI, "ADDED", builders.vmi("a", labels={"tier": "gold"}))
    fleet.apply(VMI, "ADDED", builders.vmi("b", labels={"tier": "bronze"}))
    assert names_in(fleet) == {"a"}
    fleet.apply(VMI, "MODIFIED", builders.vmi("a", labels={"tier": "silver"}))
    assert names_in(fleet) == set()


def test_a_relist_replaces_the_kind_and_drops_what_it_did_not_see() -> None:
    fleet, selfmetrics = populated("a", "b", "c")
    fleet.relist_begin(VMI)
    fleet.relist_page(VMI, [builders.vmi("a")])
    fleet.relist_page(VMI, [builders.vmi("d")])
    assert names_in(fleet) == {"a", "b", "c", "d"}  # pages apply as they arrive
    fleet.relist_end(VMI)
    assert names_in(fleet) == {"a", "d"}
    assert selfmetrics.value(metrics.EXPORTER_OBJECTS, (VMI,)) == 2
    assert selfmetrics.value(metrics.EXPORTER_SYNCED, (VMI,)) == 1


def test_a_malformed_object_in_a_relist_keeps_its_known_record() -> None:
    fleet, _ = populated("a", "b")
    broken = builders.vmi("b")
    broken["metadata"]["labels"] = {"x": 1}
    fleet.relist_begin(VMI)
    fleet.relist_page(VMI, [builders.vmi("a"), broken])
    fleet.relist_end(VMI)
    assert names_in(fleet) == {"a", "b"}


def test_missing_names_each_kind_not_listed_yet_with_its_problem() -> None:
    fleet, _ = make()
    fleet.set_problem(VM, "forbidden: virtualmachines is forbidden for user restricted")
    for resource in (VMI, VMIM):
        fleet.relist_begin(resource)
        fleet.relist_end(resource)
    assert fleet.missing() == [
        "virtualmachines: not listed yet (forbidden: virtualmachines is forbidden for user "
        "restricted)",
        "kubevirts: not listed yet",
    ]
    for resource in (VM, KV):
        fleet.relist_begin(resource)
        fleet.relist_end(resource)
    assert fleet.missing() == []


def test_a_vm_change_re_renders_exactly_its_vmi() -> None:
    fleet, _ = populated("a", "b", "c")
    fleet.body()
    renders = fleet.renders
    fleet.apply(VM, "MODIFIED", builders.vm("b", run_strategy="Manual"))
    assert fleet.renders == renders + 1
    info = {s.label("name"): s.label("run_strategy") for s in text(fleet).of(
        "kubevirt_update_vmi_info")}  # fmt: skip
    assert info == {"a": "Always", "b": "Manual", "c": "Always"}


def test_a_migration_re_renders_its_vmi_only() -> None:
    fleet, _ = populated("a", "b")
    renders = fleet.renders
    failed = builders.vmim("x", vmi_name="a", phase="Failed", workload_update=True)
    fleet.apply(VMIM, "ADDED", failed)
    assert fleet.renders == renders + 1
    failures = as_dict(text(fleet).of("kubevirt_update_vmi_update_migration_failures"), "name")
    assert failures == {("a",): 1}
    assert [m.name for m in fleet.migrations] == [failed["metadata"]["name"]]


def test_a_kubevirt_status_count_update_re_renders_no_vmi_but_shows_the_count() -> None:
    fleet, _ = populated("a", "b")
    renders = fleet.renders
    fleet.apply(KV, "MODIFIED", builders.kubevirt(reported_outdated=5))
    assert fleet.renders == renders
    reported = text(fleet).of("kubevirt_update_kubevirt_reported_outdated_vmis")
    assert [s.value for s in reported] == [5]


def test_a_control_plane_change_re_renders_every_vmi_it_changes() -> None:
    fleet, _ = populated("a", "b", "c")
    renders = fleet.renders
    # A new target image: every VMI on the old one becomes outdated.
    newer = builders.deployment_config(launcher_image="quay.io/kubevirt/virt-launcher:v1.6.0")
    fleet.apply(KV, "MODIFIED", builders.kubevirt(observed_deployment_config=newer))
    assert fleet.renders == renders + 3
    assert names_in(fleet, "kubevirt_update_vmi_outdated_reason") == {"a", "b", "c"}


def test_the_outdated_aggregate_holds_while_the_control_plane_rolls_out() -> None:
    fleet, _ = populated("a", "b")
    fleet.apply(VMI, "MODIFIED", builders.vmi("a", launcher_image=builders.OLD_IMAGE))
    total = "kubevirt_update_outdated_vmis"
    assert sum(s.value for s in text(fleet).of(total)) == 1
    rolling = builders.deployment_config(
        launcher_image="quay.io/kubevirt/virt-launcher:v1.6.0", deployment_id="deploy-next"
    )
    fleet.apply(
        KV,
        "MODIFIED",
        builders.kubevirt(observed_deployment_config=rolling, target_deployment_id="deploy-next2"),
    )
    got = text(fleet)
    assert len(got.of("kubevirt_update_vmi_outdated_reason")) == 2  # per-VMI series are live
    assert sum(s.value for s in got.of(total)) == 1  # the aggregate holds
    fleet.apply(KV, "MODIFIED", builders.kubevirt(observed_deployment_config=rolling))
    assert sum(s.value for s in text(fleet).of(total)) == 2


def test_large_changes_wait_for_the_settler_which_yields_between_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fleet_module, "DEFER_ABOVE", 2)
    monkeypatch.setattr(fleet_module, "SETTLE_SLICE", 2)
    fleet, _ = populated("a", "b", "c", "d", "e")
    newer = builders.deployment_config(launcher_image="quay.io/kubevirt/virt-launcher:v1.6.0")

    async def scenario() -> list[int]:
        settler = asyncio.create_task(fleet.run_settler())
        await asyncio.sleep(0)
        fleet.apply(KV, "MODIFIED", builders.kubevirt(observed_deployment_config=newer))
        seen = [fleet.pending]
        while fleet.pending:
            await asyncio.sleep(0)
            seen.append(fleet.pending)
        settler.cancel()
        with pytest.raises(asyncio.CancelledError):
            await settler
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == 5 and seen[-1] == 0
    assert len(seen) >= 3  # more than one slice, with the loop running in between
    assert names_in(fleet, "kubevirt_update_vmi_outdated_reason") == {"a", "b", "c", "d", "e"}


def test_without_a_settler_the_body_settles_everything_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fleet_module, "DEFER_ABOVE", 1)
    fleet, _ = populated("a", "b", "c")
    newer = builders.deployment_config(launcher_image="quay.io/kubevirt/virt-launcher:v1.6.0")
    fleet.apply(KV, "MODIFIED", builders.kubevirt(observed_deployment_config=newer))
    assert fleet.pending == 3
    assert names_in(fleet, "kubevirt_update_vmi_outdated_reason") == {"a", "b", "c"}
    assert fleet.pending == 0


def test_gzip_and_chunks_carry_the_same_exposition_as_the_body() -> None:
    fleet, _ = populated("a", "b")
    fleet.apply(VMI, "MODIFIED", builders.vmi("a", launcher_image=builders.OLD_IMAGE))
    plain = text(fleet).without(*SELF_METRICS)
    first = gzip.decompress(fleet.body_gzip())
    assert parse(first).without(*SELF_METRICS) == plain
    again = gzip.decompress(fleet.body_gzip())  # from the cached compressed part
    assert parse(again).without(*SELF_METRICS) == plain
    assert parse(b"".join(fleet.body_chunks())).without(*SELF_METRICS) == plain
    fleet.apply(VMI, "DELETED", builders.vmi("a"))
    after = parse(gzip.decompress(fleet.body_gzip()))
    assert {s.label("name") for s in after.of("kubevirt_update_vmi_info")} == {"b"}
    assert "kubevirt_update_exporter_build_info" in after.families


def test_gzip_is_one_valid_member_that_any_gzip_reader_decodes_whole() -> None:
    fleet, _ = populated("a", "b")
    compressed = fleet.body_gzip()
    # zlib's own gzip decoder (as Go's and curl's): one member, nothing after its trailer.
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    plain = decoder.decompress(compressed) + decoder.flush()
    assert decoder.eof and decoder.unused_data == b""
    assert parse(plain).without(*SELF_METRICS) == text(fleet).without(*SELF_METRICS)
    assert b"kubevirt_update_exporter_build_info" in plain


def test_scrapes_of_one_generation_share_one_compressed_per_vmi_part() -> None:
    fleet, _ = populated("a", "b")
    first, second = fleet.body_gzip_chunks(), fleet.body_gzip_chunks()
    assert first[0] is second[0]  # shared, not a copy per scrape
    fleet.apply(VMI, "DELETED", builders.vmi("a"))
    assert fleet.body_gzip_chunks()[0] is not first[0]


def test_the_text_is_kept_only_for_a_generation_an_identity_scrape_asked_for() -> None:
    fleet, _ = populated("a", "b", text_for_identity_only=True)
    plain = text(fleet)  # an identity scrape: the text is built and kept for it
    assert fleet.text_bytes > 0
    fleet.body_gzip()
    assert fleet.text_bytes > 0  # this generation was asked for: kept
    fleet.apply(VMI, "MODIFIED", builders.vmi("a", launcher_image=builders.OLD_IMAGE))
    changed = parse(gzip.decompress(fleet.body_gzip()))
    assert fleet.text_bytes == 0  # only gzip asked for the new generation: released
    assert changed.without(*SELF_METRICS) != plain.without(*SELF_METRICS)
    again = text(fleet)  # built again, the same exposition
    assert fleet.text_bytes > 0
    assert again.without(*SELF_METRICS) == changed.without(*SELF_METRICS)
    assert parse(gzip.decompress(fleet.body_gzip())).without(*SELF_METRICS) == changed.without(
        *SELF_METRICS
    )


def test_a_gzip_only_fleet_holds_no_text_and_serves_the_same_body() -> None:
    fleet, _ = populated("a", "b", "c", text_for_identity_only=True)
    reference, _ = populated("a", "b", "c")
    for _ in range(3):
        served = parse(gzip.decompress(fleet.body_gzip())).without(*SELF_METRICS)
        assert fleet.text_bytes == 0
        assert served == text(reference).without(*SELF_METRICS)
        fleet.apply(VMI, "DELETED", builders.vmi("c"))
        reference.apply(VMI, "DELETED", builders.vmi("c"))


def test_building_the_text_from_nothing_is_reported_once_per_build() -> None:
    built: list[int] = []
    fleet, _ = populated(
        "a", "b", text_for_identity_only=True, on_text_built=lambda: built.append(1)
    )
    fleet.body_gzip()  # compressed from a text it then released
    text(fleet)
    text(fleet)  # kept: nothing built
    assert built == [1]
    fleet.apply(VMI, "DELETED", builders.vmi("b"))
    fleet.body_gzip()
    text(fleet)
    assert built == [1, 1]


def test_a_watched_fleet_keeps_its_text_for_the_next_change() -> None:
    fleet, _ = populated("a", "b")
    fleet.body_gzip()
    assert fleet.text_bytes > 0


def test_concurrent_gzip_scrapes_compress_a_generation_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet, _ = populated("a", "b", "c")
    compressions: list[int] = []
    original = GzipHead.of

    def counted(generation: int, chunks: Sequence[bytes]) -> GzipHead:
        compressions.append(generation)
        time.sleep(0.05)  # long enough for every other thread to ask meanwhile
        return original(generation, chunks)

    monkeypatch.setattr(GzipHead, "of", counted)
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda _: fleet.body_gzip(), range(16)))
    assert len(compressions) == 1
    assert {gzip.decompress(b).split(b"kubevirt_update_exporter_")[0] for b in bodies} == {
        gzip.decompress(bodies[0]).split(b"kubevirt_update_exporter_")[0]
    }


def test_only_shard_zero_emits_per_kubevirt_series_by_default() -> None:
    fleet, _ = populated("a", scope=Scope(shard=1, total_shards=2))
    assert not [n for n in text(fleet).families if n.startswith("kubevirt_update_kubevirt_")]
    fleet, _ = populated("a", scope=Scope(shard=0, total_shards=2))
    assert "kubevirt_update_kubevirt_info" in text(fleet).families


def test_a_namespace_scoped_fleet_does_not_export_the_reported_count_by_default() -> None:
    fleet, _ = populated("a", scope=Scope(namespaces=frozenset({NS})))
    got = text(fleet)
    assert got.of("kubevirt_update_kubevirt_reported_outdated_vmis") == []
    assert len(got.of("kubevirt_update_kubevirt_info")) == 1


def test_self_metrics_follow_the_cache() -> None:
    fleet, selfmetrics = populated("a", "b")
    fleet.apply(VMIM, "ADDED", builders.vmim("m", vmi_name="a"))
    assert selfmetrics.value(metrics.EXPORTER_OBJECTS, (VMI,)) == 2
    assert selfmetrics.value(metrics.EXPORTER_OBJECTS, (VM,)) == 2
    assert selfmetrics.value(metrics.EXPORTER_OBJECTS, (VMIM,)) == 1
    assert selfmetrics.value(metrics.EXPORTER_OBJECTS, (KV,)) == 1
    got = text(fleet)
    assert got.of("kubevirt_update_exporter_objects")[0].value == 2


def test_bookmarks_and_errors_are_not_applied() -> None:
    fleet, _ = populated("a")
    renders = fleet.renders
    fleet.apply(VMI, "BOOKMARK", {"metadata": {"resourceVersion": "12"}})
    fleet.apply(VMI, "ERROR", {"code": 410})
    assert fleet.renders == renders
    assert names_in(fleet) == {"a"}


def test_ready_only_once_the_first_lists_are_settled_and_the_callback_runs_once() -> None:
    first_syncs: list[int] = []
    fleet, _ = make(on_first_sync=lambda: first_syncs.append(1))
    many = [builders.vmi(f"vmi-{i}") for i in range(fleet_module.DEFER_ABOVE + 50)]
    lists: list[tuple[Resource, list[dict[str, Any]]]] = [
        (KV, []),
        (VM, []),
        (VMIM, []),
        (VMI, many),
    ]
    for resource, raws in lists:
        fleet.relist_begin(resource)
        fleet.relist_page(resource, raws)
        fleet.relist_end(resource)
    # The KubeVirt CR arrives after the VMIs: every VMI is re-derived, in the background.
    fleet.relist_begin(KV)
    fleet.relist_page(KV, [builders.kubevirt()])
    fleet.relist_end(KV)
    assert fleet.missing() == [], "ready once listed and settled, never unready again"
    assert first_syncs == [1]


def test_listed_but_unsettled_vmis_keep_the_fleet_unready() -> None:
    fleet, _ = make()
    for resource in (VM, VMIM, KV):
        fleet.relist_begin(resource)
    fleet.relist_end(VM)
    fleet.relist_end(VMIM)
    fleet.relist_begin(VMI)
    fleet.relist_page(VMI, [builders.vmi(f"vmi-{i}") for i in range(fleet_module.DEFER_ABOVE + 50)])
    fleet.relist_end(VMI)
    # The KubeVirt CR arrives last: its control plane reaches every VMI at once (deferred).
    fleet.relist_page(KV, [builders.kubevirt()])
    fleet.relist_end(KV)
    assert fleet.pending > fleet_module.DEFER_ABOVE
    assert fleet.missing() == [f"settling {fleet.pending} VMIs of the first lists"]
    fleet.body()  # without a settler, a scrape settles everything first
    assert fleet.missing() == []

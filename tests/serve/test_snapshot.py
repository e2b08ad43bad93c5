"""Snapshots: every accepted shape loads into raw objects by resource; every error says where."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from exporter import snapshot
from exporter.fleet import Fleet
from exporter.model import ACTIONS, METHODS, OUTDATED_REASONS, RESOURCES, Resource, VmiView
from exporter.objects import Scope
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import SnapshotError
from tests import REPO

EXAMPLE = REPO / "examples" / "cluster-snapshot.yaml"
EXAMPLE_NO_AUTOMATION = REPO / "examples" / "no-automation" / "cluster-snapshot.yaml"


def obj(
    kind: str, name: str, namespace: str = "default", api: str = "kubevirt.io/v1"
) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": namespace}}


VMI = obj("VirtualMachineInstance", "vmi-1")
VM = obj("VirtualMachine", "vm-1")
VMIM = obj("VirtualMachineInstanceMigration", "mig-1")
KV = obj("KubeVirt", "kubevirt", "kubevirt")
POD = obj("Pod", "virt-launcher-vmi-1-abcde", api="v1")


def kubectl_list(*items: object) -> dict[str, Any]:
    """A List as `kubectl get -o json|yaml` prints it (keys sorted: items before kind)."""
    return {
        "apiVersion": "v1",
        "items": list(items),
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    }


def names(loaded: Mapping[Resource, Sequence[Mapping[str, Any]]]) -> dict[str, list[str]]:
    return {r: [o["metadata"]["name"] for o in loaded[r]] for r in RESOURCES if loaded[r]}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- shapes ----------------------------------------------------------------------------------


def test_a_kubectl_yaml_list_is_flattened_by_resource_and_other_kinds_are_skipped(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "fleet.yaml", yaml.safe_dump(kubectl_list(KV, VM, VMI, POD, VMIM)))
    assert names(snapshot.load(path)) == {
        "virtualmachineinstances": ["vmi-1"],
        "virtualmachines": ["vm-1"],
        "virtualmachineinstancemigrations": ["mig-1"],
        "kubevirts": ["kubevirt"],
    }


def test_every_resource_is_present_in_the_result_even_when_empty(tmp_path: Path) -> None:
    loaded = snapshot.load(write(tmp_path / "one.yaml", yaml.safe_dump(VM)))
    assert set(loaded) == set(RESOURCES)
    assert loaded["virtualmachineinstances"] == []


def test_a_multi_document_yaml_keeps_file_order_and_skips_empty_documents(tmp_path: Path) -> None:
    text = "---\n" + yaml.safe_dump(VMI) + "---\n---\n" + yaml.safe_dump(kubectl_list(VM))
    text += "---\n" + yaml.safe_dump(obj("VirtualMachineInstance", "vmi-2"))
    loaded = snapshot.load(write(tmp_path / "multi.yml", text))
    assert names(loaded) == {
        "virtualmachineinstances": ["vmi-1", "vmi-2"],
        "virtualmachines": ["vm-1"],
    }


def test_a_json_list_is_parsed_as_json(tmp_path: Path) -> None:
    path = write(tmp_path / "fleet.json", json.dumps(kubectl_list(VMI, POD, KV), indent=4))
    assert names(snapshot.load(path)) == {
        "virtualmachineinstances": ["vmi-1"],
        "kubevirts": ["kubevirt"],
    }


def test_a_single_json_object_and_concatenated_json_documents_load(tmp_path: Path) -> None:
    assert names(snapshot.load(write(tmp_path / "one.json", json.dumps(VMI)))) == {
        "virtualmachineinstances": ["vmi-1"]
    }
    stream = json.dumps(VM) + "\n" + json.dumps(kubectl_list(VMI)) + "\n"
    assert names(snapshot.load(write(tmp_path / "stream.json", stream))) == {
        "virtualmachineinstances": ["vmi-1"],
        "virtualmachines": ["vm-1"],
    }


@pytest.mark.parametrize("kind_first", [True, False])
def test_typed_list_items_take_the_kind_of_their_list(tmp_path: Path, kind_first: bool) -> None:
    """An API list response (`VirtualMachineInstanceList`) has items without kind/apiVersion; the
    list's kind may come before its items (the API server) or after them (sorted keys)."""
    items = [{"metadata": {"name": "a", "namespace": "ns"}}, {"metadata": {"name": "b"}}]
    head = {"kind": "VirtualMachineInstanceList", "apiVersion": "kubevirt.io/v1"}
    document = {**head, "items": items} if kind_first else {"items": items, **head}
    for path in (tmp_path / "typed.json", tmp_path / "typed.yaml"):
        path.write_text(
            json.dumps(document) if path.suffix == ".json" else yaml.safe_dump(document)
        )
        loaded = snapshot.load(path)
        assert [o["metadata"]["name"] for o in loaded["virtualmachineinstances"]] == ["a", "b"]
        assert loaded["virtualmachineinstances"][0]["kind"] == "VirtualMachineInstance"


def test_a_folder_loads_its_yaml_and_json_files_in_name_order(tmp_path: Path) -> None:
    write(tmp_path / "b.json", json.dumps(obj("VirtualMachineInstance", "from-b")))
    write(tmp_path / "a.yaml", yaml.safe_dump(obj("VirtualMachineInstance", "from-a")))
    write(tmp_path / "c.yml", yaml.safe_dump(obj("VirtualMachineInstance", "from-c")))
    write(tmp_path / "notes.txt", "not a snapshot")
    (tmp_path / "nested").mkdir()
    write(tmp_path / "nested" / "d.yaml", yaml.safe_dump(obj("VirtualMachineInstance", "nested")))
    assert names(snapshot.load(tmp_path)) == {
        "virtualmachineinstances": ["from-a", "from-b", "from-c"]
    }


def test_every_served_version_of_the_group_is_read_and_other_groups_are_not(tmp_path: Path) -> None:
    old = obj("VirtualMachineInstance", "old-api", api="kubevirt.io/v1alpha3")
    alien = obj("VirtualMachineInstance", "alien", api="example.com/v1")
    path = write(tmp_path / "versions.yaml", yaml.safe_dump(kubectl_list(old, alien)))
    assert names(snapshot.load(path)) == {"virtualmachineinstances": ["old-api"]}


def test_yaml_timestamps_stay_text_as_the_api_serves_them(tmp_path: Path) -> None:
    text = (
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\n"
        "metadata: {name: v, namespace: n, creationTimestamp: 2025-06-03T09:41:12Z}\n"
    )
    loaded = snapshot.load(write(tmp_path / "ts.yaml", text))
    assert loaded["virtualmachineinstances"][0]["metadata"]["creationTimestamp"] == (
        "2025-06-03T09:41:12Z"
    )


def test_a_file_without_a_known_suffix_is_json_when_it_starts_with_a_brace(tmp_path: Path) -> None:
    assert names(snapshot.load(write(tmp_path / "dump", json.dumps(VMI)))) == {
        "virtualmachineinstances": ["vmi-1"]
    }
    assert names(snapshot.load(write(tmp_path / "dump2", yaml.safe_dump(VM)))) == {
        "virtualmachines": ["vm-1"]
    }


def test_a_utf8_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(VMI).encode())
    assert names(snapshot.load(path)) == {"virtualmachineinstances": ["vmi-1"]}


# --- errors ----------------------------------------------------------------------------------


def error_of(path: Path) -> str:
    with pytest.raises(SnapshotError) as caught:
        snapshot.load(path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"kind": "List", "items": [{"kind": "VirtualMachine", "apiVersion": "kubevirt.io/v1"}, ',
         "item 1: line 1 column "),
        ('{"apiVersion": "v1", "kind": "List", "items": [' + json.dumps(VMI) + ", 42]}",
         "item 1: expected an object, got int"),
        ('{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "kubevirt.io/v1"}]}',
         "item 0: kind: expected a non-empty string, got None"),
        (json.dumps(VM) + "\n" + '{"kind": "VirtualMachine"}',
         "document 1: apiVersion: expected a non-empty string, got None"),
        (json.dumps(VM) + "\n[1, 2]", "document 1: line 2 column 1: expected '{'"),
        ('{"kind": "VirtualMachine" "apiVersion": "x"}',
         "document 0: line 1 column 27: expected '}'"),
        ("", "empty JSON file"),
    ],
)  # fmt: skip
def test_json_errors_name_the_file_the_document_or_item_and_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path / "broken.json", text)
    message = error_of(path)
    assert message.startswith(f"{path}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (yaml.safe_dump(VM) + "---\nkind: [unclosed\n",
         "document 1: line 8 column 1: did not find"),
        ("---\n" + yaml.safe_dump(VM) + "---\n- just\n- a list\n",
         "document 1: expected an object, got a list"),
        (yaml.safe_dump(kubectl_list(VMI, VM, "text")),
         "document 0, item 2: expected an object, got a string"),
        (yaml.safe_dump(kubectl_list(kubectl_list(VMI, {"kind": 7}))),
         "document 0, item 0, item 1: kind: expected a non-empty string, got 7"),
    ],
)  # fmt: skip
def test_yaml_errors_name_the_file_the_document_or_item_and_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path / "broken.yaml", text)
    message = error_of(path)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_a_missing_path_an_empty_folder_and_non_utf8_text_are_named(tmp_path: Path) -> None:
    assert (
        error_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such file or directory"
    )
    (empty := tmp_path / "empty").mkdir()
    assert error_of(empty) == f"{empty}: folder has no .yaml/.yml/.json files"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"kind: \xff\xfe")
    assert error_of(binary) == f"{binary}: not UTF-8 text (byte 6)"


def test_an_error_in_a_folder_names_the_file_it_is_in(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", yaml.safe_dump(VM))
    bad = write(tmp_path / "b.json", '{"kind": ')
    assert error_of(tmp_path).startswith(f"{bad}: document 0: line 1 column 10: ")


# --- feeding the fleet -----------------------------------------------------------------------


class RecordingFleet:
    """Records the relist calls `feed_fleet` makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Resource, list[str]]] = []

    def relist_begin(self, resource: Resource) -> None:
        self.calls.append(("begin", resource, []))

    def relist_page(self, resource: Resource, raws: Sequence[Mapping[str, Any]]) -> list[int]:
        self.calls.append(("page", resource, [raw["metadata"]["name"] for raw in raws]))
        return []

    def relist_end(self, resource: Resource) -> None:
        self.calls.append(("end", resource, []))

    def set_problem(self, resource: Resource, problem: str | None) -> None:
        self.calls.append(("problem", resource, [problem or ""]))


async def test_feed_replaces_every_kind_in_pages_and_ends_every_relist(tmp_path: Path) -> None:
    vmis = [obj("VirtualMachineInstance", f"vmi-{i}") for i in range(5)]
    write(tmp_path / "a.json", json.dumps(kubectl_list(KV, *vmis[:3], POD)))
    write(tmp_path / "b.yaml", yaml.safe_dump(kubectl_list(*vmis[3:], VM)))
    fleet = RecordingFleet()
    kept = await snapshot.feed_fleet(path=tmp_path, fleet=fleet, page_size=2)
    assert kept == 7
    assert fleet.calls == [
        *[("begin", r, []) for r in RESOURCES],
        ("page", "virtualmachineinstances", ["vmi-0", "vmi-1"]),
        ("page", "virtualmachineinstances", ["vmi-2", "vmi-3"]),
        ("page", "virtualmachineinstances", ["vmi-4"]),
        ("end", "virtualmachineinstances", []),
        ("page", "virtualmachines", ["vm-1"]),
        ("end", "virtualmachines", []),
        ("end", "virtualmachineinstancemigrations", []),
        ("page", "kubevirts", ["kubevirt"]),
        ("end", "kubevirts", []),
    ]


async def test_feed_yields_to_the_event_loop_between_pages(tmp_path: Path) -> None:
    vmis = [obj("VirtualMachineInstance", f"vmi-{i}") for i in range(10)]
    write(tmp_path / "big.json", json.dumps(kubectl_list(*vmis)))
    fleet = RecordingFleet()
    ticks: list[int] = []

    async def ticker() -> None:
        while True:
            ticks.append(len(fleet.calls))
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await snapshot.feed_fleet(path=tmp_path, fleet=fleet, page_size=2)
    task.cancel()
    # The other task ran while pages were still being fed, not only before or after.
    first_page, last_page = len(RESOURCES) + 1, len(RESOURCES) + 5
    assert any(first_page <= seen < last_page for seen in ticks), ticks


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_reading_a_file_leaves_no_reference_to_its_text(tmp_path: Path, suffix: str) -> None:
    """No reference cycle holds the text: `serve` freezes what is alive at its first sync, so
    text held by a cycle would stay for the life of the process (a 270 MB file measured so)."""
    dump = json.dumps if suffix == ".json" else yaml.safe_dump
    body = dump(kubectl_list(KV, *[obj("VirtualMachineInstance", f"vmi-{i}") for i in range(3)]))
    path = write(tmp_path / f"fleet{suffix}", body)
    text = snapshot.read_text(path)
    enabled = gc.isenabled()
    gc.disable()  # only reference counts free anything now
    try:
        before = sys.getrefcount(text)
        entries = list(snapshot.file_entries(path, text))
        assert sys.getrefcount(text) == before
    finally:
        if enabled:
            gc.enable()
    assert len(entries) == 5  # KubeVirt, 3 VMIs, the end of the List


async def test_objects_given_twice_are_counted_from_the_fleets_relist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twice = [obj("VirtualMachineInstance", "vmi-1"), obj("VirtualMachineInstance", "vmi-2")]
    write(tmp_path / "a.json", json.dumps(kubectl_list(*twice, VM, *twice, VM, KV)))
    fleet = Fleet(scope=Scope(), metrics=SelfMetrics())
    with structlog.testing.capture_logs() as logs:
        kept = await snapshot.feed_fleet(path=tmp_path, fleet=fleet, page_size=3)
    assert kept == 7
    (warning,) = [entry for entry in logs if entry["event"] == "snapshot.duplicate_objects"]
    assert warning["count"] == 3
    assert warning["first"].endswith("a.json: item 3")
    assert sorted(view.name for view in fleet.views()) == ["vmi-1", "vmi-2"]


def test_a_relist_page_names_the_positions_of_objects_listed_before() -> None:
    fleet = Fleet(scope=Scope(), metrics=SelfMetrics())
    vmis = [obj("VirtualMachineInstance", f"vmi-{i}") for i in range(3)]
    fleet.relist_begin("virtualmachineinstances")
    assert fleet.relist_page("virtualmachineinstances", vmis) == []
    page = [vmis[1], vmis[1], obj("VirtualMachineInstance", "vmi-9")]
    assert fleet.relist_page("virtualmachineinstances", page) == [0, 1]
    fleet.relist_end("virtualmachineinstances")
    fleet.relist_begin("virtualmachineinstances")  # a new relist starts from nothing seen
    assert fleet.relist_page("virtualmachineinstances", vmis[:1]) == []


async def test_a_snapshot_error_surfaces_from_the_feed(tmp_path: Path) -> None:
    write(tmp_path / "bad.json", '{"items": [7]}')
    with pytest.raises(SnapshotError, match="item 0: expected an object"):
        await snapshot.feed_fleet(path=tmp_path, fleet=RecordingFleet())


# --- the shipped examples ------------------------------------------------------------------


def example_views(path: Path) -> tuple[list[VmiView], Fleet]:
    raws = snapshot.load(path)
    fleet = Fleet(scope=Scope(), metrics=SelfMetrics())
    for resource in RESOURCES:
        fleet.relist_begin(resource)
        fleet.relist_page(resource, raws[resource])
        fleet.relist_end(resource)
    return fleet.views(), fleet


def test_the_example_is_a_kubectl_list_of_a_converged_fleet() -> None:
    document = yaml.load(EXAMPLE.read_text(), Loader=yaml.CSafeLoader)
    assert (document["apiVersion"], document["kind"]) == ("v1", "List")
    views, fleet = example_views(EXAMPLE)
    assert 30 <= len(views) <= 40
    assert len({view.namespace for view in views}) in (3, 4)
    cp = fleet.control_plane
    assert cp.converged
    assert cp.update_methods == frozenset({"LiveMigrate", "Evict"})
    assert cp.target_launcher_image == "quay.io/kubevirt/virt-launcher:v1.6.0"
    assert cp.kubevirt is not None and cp.kubevirt.parallel_migrations_per_cluster == 5
    assert cp.kubevirt.reported_outdated == sum(view.outdated for view in views)


def test_the_example_covers_every_reason_and_method_and_every_reachable_action() -> None:
    views, _ = example_views(EXAMPLE)
    outdated = [view for view in views if view.outdated]
    assert {view.outdated_reason for view in outdated} == set(OUTDATED_REASONS)
    assert {view.method for view in outdated} == set(METHODS)
    # With LiveMigrate enabled a live-migratable VMI is always live_migrate (docs/semantics.md), so
    # `migrate` is unreachable here; the no-automation example carries it.
    assert {view.action for view in outdated} == set(ACTIONS) - {"migrate"}
    assert any(view.update_migration_failures > 0 for view in outdated)


def test_the_examples_together_cover_every_action() -> None:
    views = example_views(EXAMPLE)[0] + example_views(EXAMPLE_NO_AUTOMATION)[0]
    assert {view.action for view in views if view.outdated} == set(ACTIONS)


def test_the_example_covers_migratability_run_strategies_and_phases() -> None:
    views, _ = example_views(EXAMPLE)
    running = [view for view in views if view.phase == "Running"]
    assert {view.not_migratable_reason for view in running} >= {
        "DisksNotLiveMigratable",
        "InterfaceNotLiveMigratable",
        "HostDeviceNotLiveMigratable",
        "ConditionMissing",
    }
    assert {view.run_strategy for view in views} >= {
        "Always",
        "RerunOnFailure",
        "Manual",
        "Once",
        "",
    }
    assert {view.phase for view in views} >= {"Running", "Scheduling", "Succeeded"}
    raws = snapshot.load(EXAMPLE)
    strategies = {vm["spec"].get("runStrategy") for vm in raws["virtualmachines"]}
    assert strategies >= {"Always", "RerunOnFailure", "Manual", "Halted", "Once"}
    phases = {(m["status"]["phase"], m["metadata"]["name"].startswith("kubevirt-workload-update-"))
              for m in raws["virtualmachineinstancemigrations"]}  # fmt: skip
    assert {("Running", True), ("Failed", True)} <= phases

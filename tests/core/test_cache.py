"""Cache: which VMIs a change of each kind affects, and the joins derive needs."""

from __future__ import annotations

from typing import Any

import pytest

from exporter import cache as cache_module
from exporter.cache import Cache
from exporter.identity import name_in_ident, vmi_ident
from exporter.model import Resource, Vmi
from exporter.objects import project
from tests import builders

VMI: Resource = "virtualmachineinstances"
VM: Resource = "virtualmachines"
VMIM: Resource = "virtualmachineinstancemigrations"
KV: Resource = "kubevirts"


def put(cache: Cache, resource: Resource, raw: dict[str, Any]) -> frozenset[tuple[str, str]]:
    return cache.upsert(project(resource, raw))


def filled() -> Cache:
    cache = Cache()
    put(cache, KV, builders.kubevirt())
    for name in ("a", "b", "c"):
        put(cache, VMI, builders.vmi(name))
        put(cache, VM, builders.vm(name))
    return cache


def key(name: str) -> tuple[str, str]:
    return (builders.NAMESPACE, name)


def test_a_vmi_change_affects_that_vmi_and_an_equal_one_nothing() -> None:
    cache = filled()
    assert put(cache, VMI, builders.vmi("a", node="node-7")) == {key("a")}
    assert put(cache, VMI, builders.vmi("a", node="node-7")) == set()
    assert put(cache, VMI, builders.vmi("new")) == {key("new")}


def test_a_vm_change_affects_the_vmi_it_owns_only() -> None:
    cache = filled()
    assert put(cache, VM, builders.vm("a", run_strategy="Manual")) == {key("a")}
    assert put(cache, VM, builders.vm("a", run_strategy="Manual")) == set()
    # A VM without a VMI, and a VM whose namesake VMI belongs to another VM, affect nothing.
    assert put(cache, VM, builders.vm("halted", run_strategy="Halted")) == set()
    put(cache, VMI, builders.vmi("adopted", owner_vm="someone-else"))
    assert put(cache, VM, builders.vm("adopted")) == set()


def test_vm_of_joins_a_vmi_to_its_owner_and_a_standalone_vmi_to_nothing() -> None:
    cache = filled()
    put(cache, VM, builders.vm("a", run_strategy=None, running=True))
    vmi = cache.vmi(key("a"))
    assert vmi is not None
    vm = cache.vm_of(vmi)
    assert vm is not None
    assert (vm.namespace, vm.name, vm.run_strategy, vm.running) == (
        builders.NAMESPACE,
        "a",
        None,
        True,
    )
    put(cache, VMI, builders.vmi("solo", owner_vm=None))
    solo = cache.vmi(key("solo"))
    assert solo is not None and cache.vm_of(solo) is None


def test_deleting_a_vm_affects_its_vmi_and_unjoins_it() -> None:
    cache = filled()
    assert cache.delete(VM, key("b")) == {key("b")}
    vmi = cache.vmi(key("b"))
    assert vmi is not None and cache.vm_of(vmi) is None
    assert cache.delete(VM, key("b")) == set()
    assert cache.count(VM) == 2


def test_a_migration_change_affects_the_vmi_it_names() -> None:
    cache = filled()
    assert put(cache, VMIM, builders.vmim("m1", vmi_name="a")) == {key("a")}
    assert put(cache, VMIM, builders.vmim("m1", vmi_name="a", phase="Failed")) == {key("a")}
    assert [m.phase for m in cache.migrations_of(key("a"))] == ["Failed"]
    # Pointing the migration at another VMI affects both.
    assert put(cache, VMIM, builders.vmim("m1", vmi_name="b")) == {key("a"), key("b")}
    assert cache.migrations_of(key("a")) == ()
    assert cache.delete(VMIM, key("m1")) == {key("b")}
    assert cache.migrations_of(key("b")) == ()


def test_a_kubevirt_change_affects_every_vmi_only_when_the_control_plane_changes() -> None:
    cache = filled()
    everyone = {key("a"), key("b"), key("c")}
    changes = cache.kubevirt_changes
    # The reported count is not part of the control plane: nothing to re-derive.
    assert put(cache, KV, builders.kubevirt(reported_outdated=3)) == set()
    assert cache.kubevirt_changes == changes + 1
    assert put(cache, KV, builders.kubevirt(reported_outdated=3)) == set()
    assert cache.kubevirt_changes == changes + 1
    assert put(cache, KV, builders.kubevirt(update_methods=("Evict",))) == everyone
    assert cache.control_plane.update_methods == {"Evict"}
    # A second CR: upstream acts on none, so the control plane changes again.
    assert put(cache, KV, builders.kubevirt(name="second")) == everyone
    assert cache.control_plane.crs == 2
    assert cache.delete(KV, ("kubevirt", "second")) == everyone


def test_deleting_what_is_not_held_affects_nothing() -> None:
    cache = filled()
    for resource in (VMI, VM, VMIM, KV):
        assert cache.delete(resource, ("nowhere", "nothing")) == set()


def test_deleting_a_vmi_affects_it_and_forgets_it() -> None:
    cache = filled()
    assert cache.delete(VMI, key("a")) == {key("a")}
    assert cache.vmi(key("a")) is None
    assert sorted(cache.keys(VMI)) == [key("b"), key("c")]
    assert cache.count(VMI) == 2


@pytest.mark.parametrize(
    "raw",
    [
        builders.vmi("owned"),
        builders.vmi("solo", owner_vm=None),
        builders.vmi("adopted", owner_vm="other-vm"),
        builders.vmi("busy", changes=("HotVCPUChange", "VolumesChange"), migrated_volumes=2),
        builders.vmi("gone", phase="Failed", deletion_timestamp="2024-10-05T00:00:00Z"),
        builders.vmi("raw", phase=None, node=None, launcher_image=None, running_since=None),
    ],
    ids=lambda raw: raw["metadata"]["name"],
)
def test_a_vmi_reads_back_equal_to_the_record_stored(raw: dict[str, Any]) -> None:
    cache = Cache()
    record = project(VMI, raw)
    assert isinstance(record, Vmi)
    cache.upsert(record)
    assert cache.vmi((record.namespace, record.name)) == record
    assert list(cache.vmis()) == [record]


def test_pooled_vmi_fields_survive_the_pool_being_recounted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cache_module, "_POOL_FLOOR", 2)
    cache = Cache()
    records = [
        project(VMI, builders.vmi(f"vm-{i}", node=f"node-{i}", launcher_image=f"img-{i % 3}"))
        for i in range(20)
    ]
    for record in records:
        cache.upsert(record)
    for record in records[:10]:
        cache.delete(VMI, (record.namespace, record.name))
    cache.upsert(project(VMI, builders.vmi("late", node="node-late")))
    assert sorted(v.name for v in cache.vmis()) == sorted([r.name for r in records[10:]] + ["late"])
    assert [cache.vmi((r.namespace, r.name)) for r in records[10:]] == records[10:]


def test_the_identity_fragment_is_shared_and_reads_back_the_name() -> None:
    cache = filled()
    ident = cache.ident(key("a"))
    assert ident == b'namespace="default",name="a"'
    put(cache, VM, builders.vm("a", run_strategy="Manual"))
    assert cache.ident(key("a")) is ident
    assert cache.ident(key("missing")) is None
    odd = ("n\\s", 'we"ird')
    assert name_in_ident(odd[0], vmi_ident(*odd)) == odd[1]

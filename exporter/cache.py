"""The records of the four watched kinds, and which VMIs a change affects.

Contract:
- Records are kept by (namespace, name) per kind. `upsert(record)` and `delete(resource, key)`
  return the keys of the VMIs whose view may have changed:
  a VMI change affects that VMI; a VM change the VMI of the same namespace and name that it owns
  (a VM's VMI carries the VM's name, and its ownerReference names the VM); a migration change
  the VMI named by its `spec.vmiName` in its namespace; a KubeVirt change every VMI, but only
  when the control plane derived from all CRs (`derive.control_plane`) actually changed, not
  counting `status.outdatedVirtualMachineInstanceWorkloads`: virt-controller rewrites it as its
  count moves (kubevirt/kubevirt:pkg/virt-controller/watch/workload-updater/workload-updater.go,
  `sync`) and no view depends on it.
  Storing a record equal to the one held, or deleting one not held, affects nothing.
- Affected keys may name VMIs that are not (or no longer) in the cache: the caller drops those.
- `vm_of`, `migrations_of` answer the joins `derive` needs, in O(1) per VMI.
- A 100k-VMI fleet is held in a few hundred bytes per VMI: VMIs and VMs are kept per namespace
  by their identity label fragment (`identity.vmi_ident`, one bytes object per VMI that the render
  store shares: `ident(key)`); a VMI is kept as its own fields (owner, Running time) plus a
  tuple of the rest shared by every VMI with the same rest, and rebuilt into a `Vmi` on demand;
  a VM is kept as its run policy (few distinct values, shared).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Collection, Iterator, Mapping
from typing import Any, Final, TypeVar

from exporter.derive import control_plane
from exporter.identity import name_in_ident, vmi_ident
from exporter.model import ControlPlane, Key, KubeVirt, Resource, Vm, Vmi, Vmim

Record = Vmi | Vm | Vmim | KubeVirt

#: What the derivation reads of a VM besides its identity: (spec.runStrategy, spec.running).
VmPolicy = tuple[str | None, bool | None]

#: Fields of `Vmi` that few VMIs share; the others are pooled.
_OWN_FIELDS: Final = ("name", "owner_vm", "running_since")
_SHARED_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Vmi) if f.name not in _OWN_FIELDS)
_shared_of: Final = operator.attrgetter(*_SHARED_FIELDS)
#: owner_vm of a stored VMI owned by the VM of its own name (the usual case).
_OWNED_BY_NAMESAKE: Final = ""
#: (ident, owner_vm or _OWNED_BY_NAMESAKE, running_since, shared fields).
_StoredVmi = tuple[bytes, str | None, float | None, tuple[object, ...]]
#: Pooled shared-field tuples are recounted when the pool outgrows this (and twice the live ones).
_POOL_FLOOR: Final = 4096

_NONE: Final[frozenset[Key]] = frozenset()
_V = TypeVar("_V")


class Cache:
    """Records by kind and key, with the VM and migration joins; see the module contract."""

    def __init__(self) -> None:
        self._vmis: dict[str, dict[bytes, _StoredVmi]] = {}
        self._shared_pool: dict[tuple[object, ...], tuple[object, ...]] = {}
        self._pool_limit = _POOL_FLOOR
        self._vm_policies: dict[str, dict[bytes, VmPolicy]] = {}
        self._policy_pool: dict[VmPolicy, VmPolicy] = {}
        self.vmims: dict[Key, Vmim] = {}
        self.kubevirts: dict[Key, KubeVirt] = {}
        #: (namespace, spec.vmiName) -> {migration name: migration}.
        self._migrations_by_vmi: dict[Key, dict[str, Vmim]] = {}
        self.control_plane: ControlPlane = control_plane(())
        #: Changes of the KubeVirt records so far (whether or not the control plane changed).
        self.kubevirt_changes = 0
        self._counts: dict[Resource, int] = {
            "virtualmachineinstances": 0,
            "virtualmachines": 0,
        }

    def count(self, resource: Resource) -> int:
        """The number of records of one kind."""
        if resource == "virtualmachineinstancemigrations":
            return len(self.vmims)
        if resource == "kubevirts":
            return len(self.kubevirts)
        return self._counts[resource]

    def keys(self, resource: Resource) -> Iterator[Key]:
        """The keys held for one kind (do not change the cache while iterating)."""
        if resource == "virtualmachineinstances":
            return _keys(self._vmis)
        if resource == "virtualmachines":
            return _keys(self._vm_policies)
        if resource == "virtualmachineinstancemigrations":
            return iter(self.vmims)
        return iter(self.kubevirts)

    def unseen(self, resource: Resource, seen: Collection[bytes]) -> list[Key]:
        """Keys of one kind whose identity (`identity.vmi_ident`) is not in `seen`."""
        if resource == "virtualmachineinstances":
            return _unseen(self._vmis, seen)
        if resource == "virtualmachines":
            return _unseen(self._vm_policies, seen)
        return [key for key in self.keys(resource) if vmi_ident(*key) not in seen]

    def vmi(self, key: Key) -> Vmi | None:
        """The VMI at `key`."""
        stored = self._stored(key)
        return None if stored is None else _expand(key[0], stored)

    def ident(self, key: Key) -> bytes | None:
        """The identity fragment object of the VMI at `key` (share it instead of a copy)."""
        stored = self._stored(key)
        return None if stored is None else stored[0]

    def vmis(self) -> Iterator[Vmi]:
        """Every VMI (do not change the cache while iterating)."""
        return (
            _expand(ns, stored) for ns, inner in self._vmis.items() for stored in inner.values()
        )

    def vm(self, key: Key) -> Vm | None:
        """The VM at `key`."""
        inner = self._vm_policies.get(key[0])
        policy = None if inner is None else inner.get(vmi_ident(*key))
        return None if policy is None else Vm(key[0], key[1], *policy)

    def vm_of(self, vmi: Vmi) -> Vm | None:
        """The VM that owns `vmi`, when the VMI has an owner and the cache holds it."""
        if vmi.owner_vm is None:
            return None
        return self.vm((vmi.namespace, vmi.owner_vm))

    def migrations_of(self, key: Key) -> tuple[Vmim, ...]:
        """Every migration whose spec.vmiName names the VMI `key` (same namespace)."""
        found = self._migrations_by_vmi.get(key)
        return () if found is None else tuple(found.values())

    def upsert(self, record: Record) -> frozenset[Key]:
        """Hold `record` (replacing the one of the same kind and key); the affected VMI keys."""
        if isinstance(record, Vmi):
            return self._put_vmi(record)
        if isinstance(record, Vm):
            return self._put_vm(record)
        key = (record.namespace, record.name)
        if isinstance(record, Vmim):
            return self._put_vmim(key, record)
        return self._put_kubevirt(key, record)

    def delete(self, resource: Resource, key: Key) -> frozenset[Key]:
        """Forget the record of `resource` at `key`; the affected VMI keys."""
        if resource == "virtualmachineinstances":
            if _pop(self._vmis, key) is None:
                return _NONE
            self._counts[resource] -= 1
            return frozenset((key,))
        if resource == "virtualmachines":
            if _pop(self._vm_policies, key) is None:
                return _NONE
            self._counts[resource] -= 1
            return self._owned_by(key)
        if resource == "virtualmachineinstancemigrations":
            vmim = self.vmims.pop(key, None)
            if vmim is None:
                return _NONE
            self._unindex(vmim)
            return frozenset(((vmim.namespace, vmim.vmi_name),))
        if self.kubevirts.pop(key, None) is None:
            return _NONE
        self.kubevirt_changes += 1
        return self._control_plane_changed()

    def _stored(self, key: Key) -> _StoredVmi | None:
        inner = self._vmis.get(key[0])
        return None if inner is None else inner.get(vmi_ident(*key))

    def _put_vmi(self, vmi: Vmi) -> frozenset[Key]:
        inner = self._vmis.setdefault(vmi.namespace, {})
        stored = self._store_form(vmi)
        ident = stored[0]
        old = inner.get(ident)
        if old == stored:
            return _NONE
        # Popped, not overwritten: a dict keeps its first key object, and every holder (the VM
        # entry, the render store) moves to the new one.
        inner.pop(ident, None)
        inner[ident] = stored
        if old is None:
            self._counts["virtualmachineinstances"] += 1
        policies = self._vm_policies.get(vmi.namespace)
        if policies is not None:
            policy = policies.pop(ident, None)
            if policy is not None:
                policies[ident] = policy
        return frozenset(((vmi.namespace, vmi.name),))

    def _store_form(self, vmi: Vmi) -> _StoredVmi:
        shared = _shared_of(vmi)
        pooled = self._shared_pool.setdefault(shared, shared)
        if len(self._shared_pool) > self._pool_limit:
            self._repool()
            pooled = self._shared_pool.setdefault(pooled, pooled)
        owner = _OWNED_BY_NAMESAKE if vmi.owner_vm == vmi.name else vmi.owner_vm
        return (vmi_ident(vmi.namespace, vmi.name), owner, vmi.running_since, pooled)

    def _repool(self) -> None:
        """Forget pooled tuples no VMI uses any more."""
        live = (stored[3] for inner in self._vmis.values() for stored in inner.values())
        self._shared_pool = {shared: shared for shared in live}
        self._pool_limit = max(_POOL_FLOOR, 2 * len(self._shared_pool))

    def _put_vm(self, vm: Vm) -> frozenset[Key]:
        policy = (vm.run_strategy, vm.running)
        inner = self._vm_policies.setdefault(vm.namespace, {})
        key = (vm.namespace, vm.name)
        ident = self.ident(key) or vmi_ident(*key)
        held = inner.pop(ident, None)
        inner[ident] = self._policy_pool.setdefault(policy, policy)
        if held == policy:
            return _NONE
        if held is None:
            self._counts["virtualmachines"] += 1
        return self._owned_by(key)

    def _owned_by(self, vm_key: Key) -> frozenset[Key]:
        vmi = self.vmi(vm_key)
        if vmi is None or vmi.owner_vm != vm_key[1]:
            return _NONE
        return frozenset((vm_key,))

    def _put_vmim(self, key: Key, vmim: Vmim) -> frozenset[Key]:
        old = self.vmims.get(key)
        if old == vmim:
            return _NONE
        affected = {(vmim.namespace, vmim.vmi_name)}
        if old is not None:
            self._unindex(old)
            affected.add((old.namespace, old.vmi_name))
        self.vmims[key] = vmim
        self._migrations_by_vmi.setdefault((vmim.namespace, vmim.vmi_name), {})[vmim.name] = vmim
        return frozenset(affected)

    def _unindex(self, vmim: Vmim) -> None:
        vmi_key = (vmim.namespace, vmim.vmi_name)
        found = self._migrations_by_vmi.get(vmi_key)
        if found is None:
            return
        found.pop(vmim.name, None)
        if not found:
            del self._migrations_by_vmi[vmi_key]

    def _put_kubevirt(self, key: Key, kubevirt: KubeVirt) -> frozenset[Key]:
        if self.kubevirts.get(key) == kubevirt:
            return _NONE
        self.kubevirts[key] = kubevirt
        self.kubevirt_changes += 1
        return self._control_plane_changed()

    def _control_plane_changed(self) -> frozenset[Key]:
        cp = control_plane(self.kubevirts.values())
        before, self.control_plane = self.control_plane, cp
        if _without_report(cp) == _without_report(before):
            return _NONE
        return frozenset(self.keys("virtualmachineinstances"))


def _without_report(cp: ControlPlane) -> ControlPlane:
    """The control plane as views see it: without upstream's own outdated count."""
    if cp.kubevirt is None or cp.kubevirt.reported_outdated is None:
        return cp
    return dataclasses.replace(
        cp, kubevirt=dataclasses.replace(cp.kubevirt, reported_outdated=None)
    )


def _expand(namespace: str, stored: _StoredVmi) -> Vmi:
    ident, owner, running_since, shared = stored
    name = name_in_ident(namespace, ident)
    fields: dict[str, Any] = dict(zip(_SHARED_FIELDS, shared, strict=True))
    return Vmi(
        name=name,
        owner_vm=name if owner == _OWNED_BY_NAMESAKE else owner,
        running_since=running_since,
        **fields,
    )


def _keys(by_namespace: Mapping[str, Mapping[bytes, object]]) -> Iterator[Key]:
    return ((ns, name_in_ident(ns, ident)) for ns, inner in by_namespace.items() for ident in inner)


def _unseen(
    by_namespace: Mapping[str, Mapping[bytes, object]], seen: Collection[bytes]
) -> list[Key]:
    return [
        (ns, name_in_ident(ns, ident))
        for ns, inner in by_namespace.items()
        for ident in inner
        if ident not in seen
    ]


def _pop(by_namespace: dict[str, dict[bytes, _V]], key: Key) -> _V | None:
    inner = by_namespace.get(key[0])
    if inner is None:
        return None
    found = inner.pop(vmi_ident(*key), None)
    if not inner:
        del by_namespace[key[0]]
    return found

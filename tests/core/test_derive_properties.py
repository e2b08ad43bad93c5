"""Invariants of projection and derivation over generated objects (hypothesis)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exporter.derive import WAITING_METHODS, control_plane, derive
from exporter.model import RESOURCES, ControlPlane, Resource, Vmi, VmiView
from exporter.objects import (
    MalformedObject,
    project,
    project_kubevirt,
    project_vm,
    project_vmi,
    project_vmim,
)
from tests import builders as b

Raw = dict[str, Any]

PHASES = ("Pending", "Scheduling", "Scheduled", "Running", "Succeeded", "Failed", "Unknown")
IMAGES = (None, "", b.OLD_IMAGE, b.TARGET_IMAGE, b.DIGEST_IMAGE)
EVICTION_STRATEGIES = (None, "None", "LiveMigrate", "LiveMigrateIfPossible", "External", "Bogus")
RUN_STRATEGIES = (None, "Always", "RerunOnFailure", "Manual", "Halted", "Once", "WaitAsReceiver")
CHANGES = ("HotVCPUChange", "HotMemoryChange", "MigrationRequired", "VolumesChange")
MIGRATION_PHASES = (None, "Pending", "Scheduling", "Running", "Succeeded", "Failed")
CONFIGS = ("", b.deployment_config(), b.deployment_config(launcher_image=None), "not json")

vmis = st.builds(
    b.vmi,
    phase=st.sampled_from(PHASES),
    outdated_label=st.booleans(),
    launcher_image=st.sampled_from(IMAGES),
    live_migratable=st.sampled_from((True, False, None)),
    changes=st.lists(st.sampled_from(CHANGES), unique=True, max_size=4),
    change_status=st.sampled_from(("True", "False")),
    migration=st.sampled_from(
        (None, b.migration_state(), b.migration_state(end="2024-10-03T10:05:00Z"))
    ),
    migrated_volumes=st.integers(0, 2),
    eviction_strategy=st.sampled_from(EVICTION_STRATEGIES),
    owner_vm=st.sampled_from(("", None)),
    running_since=st.sampled_from((None, b.RUNNING_SINCE)),
    deletion_timestamp=st.sampled_from((None, "2024-10-04T00:00:00Z")),
)
vms = st.one_of(
    st.none(),
    st.builds(
        b.vm,
        run_strategy=st.sampled_from(RUN_STRATEGIES),
        running=st.sampled_from((None, True, False)),
    ),
)
vmims = st.lists(
    st.builds(
        b.vmim,
        name=st.sampled_from(("m1", "m2", "m3")),
        phase=st.sampled_from(MIGRATION_PHASES),
        workload_update=st.booleans(),
    ),
    max_size=3,
)
kubevirts = st.lists(
    st.builds(
        b.kubevirt,
        name=st.sampled_from(("kubevirt", "kubevirt-2")),
        phase=st.sampled_from(("Deployed", "Deploying")),
        target_deployment_id=st.sampled_from((None, "deploy-next")),
        update_methods=st.lists(st.sampled_from(("LiveMigrate", "Evict")), unique=True, max_size=2),
        eviction_strategy=st.sampled_from(EVICTION_STRATEGIES),
        observed_deployment_config=st.sampled_from(CONFIGS),
        hco=st.booleans(),
    ),
    max_size=2,
)


def view_of(
    vmi: Raw, vm: Raw | None, migrations: list[Raw], kvs: list[Raw]
) -> tuple[Vmi, VmiView, ControlPlane]:
    record = project_vmi(vmi)
    cp = control_plane(project_kubevirt(raw) for raw in kvs)
    view = derive(
        record,
        vm=None if vm is None or record.owner_vm is None else project_vm(vm),
        migrations=[project_vmim(raw) for raw in migrations],
        cp=cp,
    )
    return record, view, cp


@given(vmis, vms, vmims, kubevirts)
def test_vmi_that_is_not_running_or_is_being_deleted_is_never_outdated(
    vmi: Raw, vm: Raw | None, migrations: list[Raw], kvs: list[Raw]
) -> None:
    record, view, _ = view_of(vmi, vm, migrations, kvs)
    if record.phase != "Running" or record.deleting:
        assert not view.outdated


@given(vmis, vms, vmims, kubevirts)
def test_action_is_wait_exactly_when_automation_acts(
    vmi: Raw, vm: Raw | None, migrations: list[Raw], kvs: list[Raw]
) -> None:
    _, view, _ = view_of(vmi, vm, migrations, kvs)
    assert (view.action == "wait") == (view.method in WAITING_METHODS)


@given(vmis, vms, vmims, kubevirts)
def test_outdated_reason_and_since_exist_only_while_outdated(
    vmi: Raw, vm: Raw | None, migrations: list[Raw], kvs: list[Raw]
) -> None:
    _, view, _ = view_of(vmi, vm, migrations, kvs)
    assert (view.outdated_reason is not None) == view.outdated
    if view.outdated_since is not None:
        assert view.outdated


@given(vmis, vms, vmims, kubevirts)
def test_not_migratable_reason_exists_exactly_when_not_migratable(
    vmi: Raw, vm: Raw | None, migrations: list[Raw], kvs: list[Raw]
) -> None:
    _, view, _ = view_of(vmi, vm, migrations, kvs)
    assert (view.not_migratable_reason is None) == view.live_migratable
    assert (view.method == "in_progress") == view.migrating


@given(vmis, vms, vmims, kubevirts)
def test_an_empty_launcher_image_is_never_outdated_by_image(
    vmi: Raw, vm: Raw | None, migrations: list[Raw], kvs: list[Raw]
) -> None:
    record, view, _ = view_of(vmi, vm, migrations, kvs)
    if not record.launcher_image:
        assert view.outdated_reason != "launcher_image"
        assert not view.verdict_disagreement


@given(vmis, vms, vmims, kubevirts)
def test_no_output_text_ever_advises_virtctl_stop(
    vmi: Raw, vm: Raw | None, migrations: list[Raw], kvs: list[Raw]
) -> None:
    _, view, cp = view_of(vmi, vm, migrations, kvs)
    for text in (repr(view), repr(cp)):
        assert "virtctl stop" not in text


@given(vmis, vms, vmims, kubevirts)
def test_derive_is_deterministic(
    vmi: Raw, vm: Raw | None, migrations: list[Raw], kvs: list[Raw]
) -> None:
    first = view_of(vmi, vm, migrations, kvs)
    again = view_of(
        copy.deepcopy(vmi), copy.deepcopy(vm), copy.deepcopy(migrations), copy.deepcopy(kvs)
    )
    assert first == again


@given(vmis, vms, vmims, kubevirts)
def test_the_order_of_migrations_does_not_matter(
    vmi: Raw, vm: Raw | None, migrations: list[Raw], kvs: list[Raw]
) -> None:
    assert view_of(vmi, vm, migrations, kvs)[1] == view_of(vmi, vm, migrations[::-1], kvs)[1]


# --- projection never raises anything but MalformedObject ----------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        ("Running", "True", "LiveMigratable", "2024-09-18T19:43:56Z", "1m0s", "{}", "[")
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
resources = st.sampled_from(RESOURCES)


def _project_or_malformed(resource: Resource, raw: Any) -> None:
    try:
        project(resource, raw)
    except MalformedObject as error:
        assert str(error).startswith(resource)
        assert error.field


@given(resources, json_values)
def test_projection_of_arbitrary_json_returns_a_record_or_raises_malformed(
    resource: Resource, raw: Any
) -> None:
    _project_or_malformed(resource, raw)


@given(
    resources,
    st.dictionaries(
        st.sampled_from(("metadata", "spec", "status", "kind")),
        st.dictionaries(
            st.sampled_from(
                (
                    "name",
                    "namespace",
                    "labels",
                    "phase",
                    "conditions",
                    "uid",
                    "workloadUpdateStrategy",
                )
            ),
            json_values,
            max_size=4,
        )
        | json_values,
        max_size=4,
    ),
)
def test_projection_of_object_shaped_json_returns_a_record_or_raises_malformed(
    resource: Resource, raw: dict[str, Any]
) -> None:
    _project_or_malformed(resource, raw)


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every path into a JSON tree (dict keys and list indexes)."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


REALISTIC: dict[Resource, Raw] = {
    "virtualmachineinstances": b.vmi(
        changes=list(CHANGES),
        migration=b.migration_state(),
        migrated_volumes=1,
        eviction_strategy="LiveMigrate",
    ),
    "virtualmachines": b.vm(running=True),
    "virtualmachineinstancemigrations": b.vmim(workload_update=True),
    "kubevirts": b.kubevirt(
        batch_eviction_size=5,
        batch_eviction_interval="2m",
        eviction_strategy="None",
        parallel_migrations_per_cluster=3,
    ),
}


@given(st.data(), resources, json_values)
def test_realistic_object_with_one_field_replaced_projects_or_raises_malformed(
    data: st.DataObject, resource: Resource, replacement: Any
) -> None:
    raw = copy.deepcopy(REALISTIC[resource])
    path = data.draw(st.sampled_from(list(_paths(raw))))
    parent: Any = raw
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = replacement
    _project_or_malformed(resource, raw)

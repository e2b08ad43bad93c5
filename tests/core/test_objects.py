"""Projection of raw objects onto records, malformed input, label selectors, scope and shards."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from exporter.model import CONDITION_MISSING, KubeVirt, PendingChange, Resource, Vm, Vmi, Vmim
from exporter.objects import (
    MalformedObject,
    Scope,
    launcher_images,
    project,
    project_kubevirt,
    project_vm,
    project_vmi,
    project_vmim,
)
from exporter.selectors import LabelSelector
from exporter.sharding import shard_of
from exporter.timeparse import parse_rfc3339
from tests import builders as b

RUNNING_SINCE = 1726688636.0  # b.RUNNING_SINCE
CHANGED_AT = 1727861400.0  # b.CHANGED_AT
AVAILABLE_SINCE = 1727769600.0  # b.AVAILABLE_SINCE


# --- VMI -----------------------------------------------------------------------------------


def test_builder_timestamps_are_the_constants_above() -> None:
    assert parse_rfc3339(b.RUNNING_SINCE) == RUNNING_SINCE
    assert parse_rfc3339(b.CHANGED_AT) == CHANGED_AT
    assert parse_rfc3339(b.AVAILABLE_SINCE) == AVAILABLE_SINCE


def test_vmi_projection_reads_every_field_of_a_healthy_vmi() -> None:
    raw = b.vmi("web-1", "prod", uid="uid-1", node="node-7", eviction_strategy="LiveMigrate")
    assert project_vmi(raw) == Vmi(
        namespace="prod",
        name="web-1",
        phase="Running",
        deleting=False,
        node="node-7",
        outdated_label=False,
        launcher_image=b.TARGET_IMAGE,
        live_migratable=True,
        not_migratable_reason="",
        pending_changes=(),
        migrating=False,
        volume_migration=False,
        eviction_strategy="LiveMigrate",
        owner_vm="web-1",
        running_since=RUNNING_SINCE,
    )


def test_vmi_projection_reads_the_outdated_label_deletion_and_volume_migration() -> None:
    raw = b.vmi(
        outdated_label=True,
        launcher_image=b.OLD_IMAGE,
        deletion_timestamp="2024-10-04T00:00:00Z",
        migrated_volumes=2,
    )
    record = project_vmi(raw)
    assert (record.outdated_label, record.launcher_image) == (True, b.OLD_IMAGE)
    assert record.deleting is True
    assert record.volume_migration is True


# -- found by the differential test against upstream (tests/upstream/test_oracle.py) -----------


def test_any_true_livemigratable_condition_makes_the_vmi_migratable_as_upstream_reads_it() -> None:
    """`VirtualMachineInstance.IsMigratable()` looks for any True LiveMigratable condition, the
    updater and the eviction webhook both use it: a False one listed first does not win."""
    raw = b.vmi(
        live_migratable=False,
        extra_conditions=[b.condition("LiveMigratable", "True")],
    )
    record = project_vmi(raw)
    assert (record.live_migratable, record.not_migratable_reason) == (True, "")
    raw = b.vmi(
        live_migratable=True,
        extra_conditions=[b.condition("LiveMigratable", "False", reason="DisksNotLiveMigratable")],
    )
    assert project_vmi(raw).live_migratable is True


def test_a_volume_migration_refused_by_storage_live_migratable_false_is_no_volume_migration() -> (
    None
):
    """`ValidateVolumesUpdateMigration` fails on StorageLiveMigratable=False, so the updater does
    not treat the migrated volumes as a reason to live-migrate."""
    refused = b.vmi(
        migrated_volumes=1,
        extra_conditions=[b.condition("StorageLiveMigratable", "False", reason="NotMigratable")],
    )
    assert project_vmi(refused).volume_migration is False
    assert project_vmi(b.vmi(migrated_volumes=1)).volume_migration is True


def pvc_volume(name: str, *modes: str) -> dict[str, Any]:
    return {
        "name": name,
        "target": "vdb",
        "persistentVolumeClaimInfo": {"claimName": name, "accessModes": list(modes)},
    }


def test_a_volume_migration_leaving_a_readwriteonce_pvc_behind_is_no_volume_migration() -> None:
    """Every ReadWriteOnce PVC but the backend-storage one must be among the migrated volumes
    (`ValidateVolumesUpdateMigration`); shared PVCs may stay."""
    raw = b.vmi(migrated_volumes=1)  # migrates disk-0
    raw["status"]["volumeStatus"] = [
        pvc_volume("disk-0", "ReadWriteOnce"),
        pvc_volume("shared", "ReadWriteMany"),
        pvc_volume("persistent-state-for-vmi-1-abcde", "ReadWriteOnce"),
    ]
    assert project_vmi(raw).volume_migration is True
    raw["status"]["volumeStatus"].append(pvc_volume("left-behind", "ReadWriteOnce"))
    assert project_vmi(raw).volume_migration is False


def test_vmi_without_status_projects_to_unknowns() -> None:
    raw = b.vmi()
    del raw["status"]
    record = project_vmi(raw)
    assert (record.phase, record.node, record.launcher_image) == ("", "", "")
    assert record.live_migratable is False
    assert record.not_migratable_reason == CONDITION_MISSING
    assert record.running_since is None


def test_not_migratable_vmi_keeps_the_conditions_reason() -> None:
    record = project_vmi(
        b.vmi(live_migratable=False, not_migratable_reason="HostDeviceNotLiveMigratable")
    )
    assert (record.live_migratable, record.not_migratable_reason) == (
        False,
        "HostDeviceNotLiveMigratable",
    )


def test_missing_live_migratable_condition_reads_as_condition_missing() -> None:
    record = project_vmi(b.vmi(live_migratable=None))
    assert (record.live_migratable, record.not_migratable_reason) == (False, CONDITION_MISSING)


def test_false_live_migratable_condition_without_reason_reads_as_unknown() -> None:
    raw = b.vmi(live_migratable=None, extra_conditions=[b.condition("LiveMigratable", "False")])
    assert project_vmi(raw).not_migratable_reason == "Unknown"


def test_pending_changes_follow_the_reason_order_whatever_the_condition_order() -> None:
    raw = b.vmi(changes=["VolumesChange", "MigrationRequired", "HotMemoryChange", "HotVCPUChange"])
    assert project_vmi(raw).pending_changes == (
        PendingChange("hotplug_cpu", CHANGED_AT),
        PendingChange("hotplug_memory", CHANGED_AT),
        PendingChange("migration_required", CHANGED_AT),
        PendingChange("volumes_change", CHANGED_AT),
    )


def test_hot_vcpu_change_counts_whatever_its_status_the_others_only_when_true() -> None:
    raw = b.vmi(
        changes=["HotVCPUChange", "HotMemoryChange", "MigrationRequired", "VolumesChange"],
        change_status="False",
    )
    assert project_vmi(raw).pending_changes == (PendingChange("hotplug_cpu", CHANGED_AT),)


def test_pending_change_without_transition_time_has_no_since() -> None:
    raw = b.vmi(changes=["HotMemoryChange"], change_since=None)
    assert project_vmi(raw).pending_changes == (PendingChange("hotplug_memory", None),)


def test_first_condition_of_a_type_wins() -> None:
    raw = b.vmi(
        live_migratable=True, extra_conditions=[b.condition("LiveMigratable", "False", reason="X")]
    )
    assert project_vmi(raw).live_migratable is True


@pytest.mark.parametrize(
    ("state", "migrating"),
    [
        pytest.param(b.migration_state(), True, id="started-not-ended-is-migrating"),
        pytest.param(
            b.migration_state(end="2024-10-03T10:05:00Z"), False, id="ended-is-not-migrating"
        ),
        pytest.param(b.migration_state(start=None), False, id="not-started-is-not-migrating"),
        pytest.param({"migrationPolicyName": "p"}, False, id="policy-only-state-is-not-migrating"),
    ],
)
def test_migration_state_decides_migrating(state: dict[str, Any], migrating: bool) -> None:
    assert project_vmi(b.vmi(migration=state)).migrating is migrating


def test_standalone_vmi_has_no_owner() -> None:
    assert project_vmi(b.vmi(owner_vm=None)).owner_vm is None


def test_owner_that_is_not_a_controller_vm_makes_a_standalone_vmi() -> None:
    raw = b.vmi(owner_vm=None)
    raw["metadata"]["ownerReferences"] = [
        b.owner_reference("vm-a", controller=False),
        b.owner_reference("pool-a", kind="VirtualMachinePool"),
    ]
    assert project_vmi(raw).owner_vm is None


def test_running_since_is_the_running_transition() -> None:
    assert (
        project_vmi(b.vmi(running_since="2024-01-02T03:04:05.5+01:00")).running_since
        == 1704161045.5
    )


def test_vmi_without_namespace_projects_with_an_empty_namespace() -> None:
    raw = b.vmi()
    del raw["metadata"]["namespace"]
    assert project_vmi(raw).namespace == ""


def test_repeated_strings_are_shared_between_records() -> None:
    # Built from separate JSON documents so equal strings start as distinct objects.
    first = project_vmi(json.loads(json.dumps(b.vmi("a", eviction_strategy="LiveMigrate"))))
    second = project_vmi(json.loads(json.dumps(b.vmi("b", eviction_strategy="LiveMigrate"))))
    assert first.namespace is second.namespace
    assert first.node is second.node
    assert first.phase is second.phase
    assert first.launcher_image is second.launcher_image
    assert first.eviction_strategy is second.eviction_strategy
    assert first.pending_changes == ()
    assert first.pending_changes is second.pending_changes


# --- VM, VMIM ------------------------------------------------------------------------------


def test_vm_projection_reads_run_strategy_and_running() -> None:
    assert project_vm(b.vm("vm-1", "prod", run_strategy="Manual")) == Vm(
        "prod", "vm-1", "Manual", None
    )
    assert project_vm(b.vm(run_strategy=None, running=False)) == Vm("default", "vmi-1", None, False)


def test_vmim_projection_reads_target_phase_and_origin() -> None:
    assert project_vmim(b.vmim("m-1", vmi_name="web", phase="Failed")) == Vmim(
        "default", "m-1", "web", "Failed", False
    )


def _annotated(raw: dict[str, Any]) -> dict[str, Any]:
    raw["metadata"]["annotations"]["kubevirt.io/workloadUpdateMigration"] = ""
    return raw


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b.vmim("abc", workload_update=True), id="annotation-and-prefix"),
        pytest.param(b.vmim("abc", workload_update=True, annotate=False), id="prefix-only"),
        pytest.param(_annotated(b.vmim("manual")), id="annotation-only"),
    ],
)
def test_vmim_created_by_the_workload_updater_is_recognised(raw: dict[str, Any]) -> None:
    assert project_vmim(raw).workload_update is True


def test_vmim_without_status_has_no_phase_and_is_unfinished() -> None:
    record = project_vmim(b.vmim(phase=None))
    assert record.phase == ""
    assert record.finished is False


# --- KubeVirt ------------------------------------------------------------------------------


def test_kubevirt_projection_reads_every_field() -> None:
    raw = b.kubevirt(
        observed_deployment_id="d-1",
        target_deployment_id="d-2",
        observed_version="v1.4.0",
        target_version="v1.5.0",
        update_methods=["Evict", "LiveMigrate"],
        batch_eviction_size=3,
        batch_eviction_interval="1m30s",
        eviction_strategy="LiveMigrate",
        parallel_migrations_per_cluster=7,
        reported_outdated=12,
        hco=True,
    )
    assert project_kubevirt(raw) == KubeVirt(
        namespace="kubevirt",
        name="kubevirt",
        phase="Deployed",
        observed_deployment_id="d-1",
        target_deployment_id="d-2",
        observed_version="v1.4.0",
        target_version="v1.5.0",
        update_methods=("Evict", "LiveMigrate"),
        batch_eviction_size=3,
        batch_eviction_interval_seconds=90.0,
        eviction_strategy="LiveMigrate",
        parallel_migrations_per_cluster=7,
        reported_outdated=12,
        target_launcher_image=b.TARGET_IMAGE,
        rebuilt_launcher_image="",
        available_since=AVAILABLE_SINCE,
        hco_managed=True,
    )


def test_kubevirt_defaults_follow_upstream_when_the_strategy_is_unset() -> None:
    raw = b.kubevirt(update_methods=None, reported_outdated=None)
    record = project_kubevirt(raw)
    assert record.update_methods == ()
    assert (record.batch_eviction_size, record.batch_eviction_interval_seconds) == (10, 60.0)
    assert (record.eviction_strategy, record.parallel_migrations_per_cluster) == (None, None)
    assert record.reported_outdated is None


def test_unknown_and_repeated_update_methods_are_dropped() -> None:
    raw = b.kubevirt(update_methods=["Recreate", "LiveMigrate", "LiveMigrate"])
    assert project_kubevirt(raw).update_methods == ("LiveMigrate",)


@pytest.mark.parametrize(
    ("labels", "managed"),
    [
        pytest.param(
            {"app.kubernetes.io/managed-by": "hco-operator"}, True, id="managed-by-hco-operator"
        ),
        pytest.param({"app": "kubevirt-hyperconverged"}, True, id="app-kubevirt-hyperconverged"),
        pytest.param({"app.kubernetes.io/managed-by": "argocd"}, False, id="other-manager"),
        pytest.param({}, False, id="no-labels"),
    ],
)
def test_hco_management_is_detected_from_the_crs_labels(
    labels: dict[str, str], managed: bool
) -> None:
    assert project_kubevirt(b.kubevirt(labels=labels)).hco_managed is managed


@pytest.mark.parametrize(
    ("config", "images"),
    [
        pytest.param(
            b.deployment_config(launcher_image=b.DIGEST_IMAGE),
            (b.DIGEST_IMAGE, ""),
            id="exact-target",
        ),
        pytest.param(
            b.deployment_config(
                launcher_image=None,
                registry="reg.example/kv",
                image_prefix="pre-",
                version="v1.6.1",
            ),
            ("", "reg.example/kv/pre-virt-launcher:v1.6.1"),
            id="rebuilt-with-prefix",
        ),
        pytest.param(
            b.deployment_config(launcher_image=None),
            ("", b.TARGET_IMAGE),
            id="rebuilt-without-prefix",
        ),
        pytest.param(
            json.dumps({"kubeVirtVersion": "v1"}), ("", ""), id="no-registry-nothing-rebuilt"
        ),
        pytest.param("observedDeploymentConfigValue", ("", ""), id="not-json-unknown"),
        pytest.param("[1, 2]", ("", ""), id="json-array-unknown"),
        pytest.param(json.dumps({"virtLauncherImage": 5}), ("", ""), id="non-string-image-unknown"),
        pytest.param("", ("", ""), id="empty-unknown"),
    ],
)
def test_launcher_images_come_from_the_observed_deployment_config(
    config: str, images: tuple[str, str]
) -> None:
    assert launcher_images(config) == images
    assert (
        project_kubevirt(b.kubevirt(observed_deployment_config=config)).target_launcher_image
        == images[0]
    )


def test_kubevirt_with_unparsable_deployment_config_is_not_malformed() -> None:
    record = project_kubevirt(b.kubevirt(observed_deployment_config="{not json"))
    assert (record.target_launcher_image, record.rebuilt_launcher_image) == ("", "")
    assert record.phase == "Deployed"


def test_project_dispatches_on_the_resource() -> None:
    assert isinstance(project("virtualmachineinstances", b.vmi()), Vmi)
    assert isinstance(project("virtualmachines", b.vm()), Vm)
    assert isinstance(project("virtualmachineinstancemigrations", b.vmim()), Vmim)
    assert isinstance(project("kubevirts", b.kubevirt()), KubeVirt)


# --- malformed objects ---------------------------------------------------------------------


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """A mutation setting a dotted path (numeric parts index lists)."""

    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


MALFORMED: list[Any] = [
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("status", "Running"),
        "status",
        "expected an object, got string",
        id="vmi-status-not-an-object",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("status.phase", 3),
        "status.phase",
        "expected a string, got integer",
        id="vmi-phase-not-a-string",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _delete("metadata.name"),
        "metadata.name",
        "missing",
        id="vmi-name-missing",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("metadata.name", ""),
        "metadata.name",
        "missing",
        id="vmi-name-empty",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("metadata.name", 7),
        "metadata.name",
        "expected a string",
        id="vmi-name-not-a-string",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("metadata", []),
        "metadata",
        "expected an object, got array",
        id="vmi-metadata-not-an-object",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("metadata.labels", ["a"]),
        "metadata.labels",
        "expected an object",
        id="vmi-labels-not-a-map",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("metadata.labels", {"team": 1}),
        "metadata.labels['team']",
        "expected a string, got integer",
        id="vmi-label-value-not-a-string",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("metadata.deletionTimestamp", "yesterday"),
        "metadata.deletionTimestamp",
        "RFC 3339",
        id="vmi-bad-deletion-timestamp",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("status.conditions", {"type": "Ready"}),
        "status.conditions",
        "expected an array, got object",
        id="vmi-conditions-not-an-array",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("status.conditions.0", "Ready"),
        "status.conditions[0]",
        "expected an object, got string",
        id="vmi-condition-not-an-object",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("status.conditions.2.status", True),
        "status.conditions[2].status",
        "expected a string, got boolean",
        id="vmi-condition-status-not-a-string",
    ),
    pytest.param(
        "virtualmachineinstances",
        lambda: b.vmi(changes=["HotMemoryChange"]),
        _set("status.conditions.3.lastTransitionTime", "2024-13-01T00:00:00Z"),
        "status.conditions[3].lastTransitionTime",
        "RFC 3339",
        id="vmi-change-bad-transition-time",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("status.phaseTransitionTimestamps.3.phaseTransitionTimestamp", "2024-09-18 19:43:56"),
        "status.phaseTransitionTimestamps[3].phaseTransitionTimestamp",
        "RFC 3339",
        id="vmi-bad-running-timestamp",
    ),
    pytest.param(
        "virtualmachineinstances",
        lambda: b.vmi(migration=b.migration_state()),
        _set("status.migrationState.startTimestamp", 5),
        "status.migrationState.startTimestamp",
        "expected a string",
        id="vmi-migration-start-not-a-string",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("status.migratedVolumes", "disk"),
        "status.migratedVolumes",
        "expected an array",
        id="vmi-migrated-volumes-not-an-array",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("metadata.ownerReferences.0.controller", "yes"),
        "metadata.ownerReferences[0].controller",
        "expected a boolean, got string",
        id="vmi-owner-controller-not-a-boolean",
    ),
    pytest.param(
        "virtualmachineinstances",
        b.vmi,
        _set("spec.evictionStrategy", ["None"]),
        "spec.evictionStrategy",
        "expected a string, got array",
        id="vmi-eviction-strategy-not-a-string",
    ),
    pytest.param(
        "virtualmachines",
        b.vm,
        _set("spec.running", "true"),
        "spec.running",
        "expected a boolean, got string",
        id="vm-running-not-a-boolean",
    ),
    pytest.param(
        "virtualmachines",
        b.vm,
        _set("spec", "x"),
        "spec",
        "expected an object",
        id="vm-spec-not-an-object",
    ),
    pytest.param(
        "virtualmachineinstancemigrations",
        b.vmim,
        _set("spec.vmiName", 1),
        "spec.vmiName",
        "expected a string",
        id="vmim-vmi-name-not-a-string",
    ),
    pytest.param(
        "virtualmachineinstancemigrations",
        b.vmim,
        _set("metadata.annotations", "a"),
        "metadata.annotations",
        "expected an object",
        id="vmim-annotations-not-an-object",
    ),
    pytest.param(
        "kubevirts",
        b.kubevirt,
        _set("spec.workloadUpdateStrategy.batchEvictionInterval", "1 minute"),
        "spec.workloadUpdateStrategy.batchEvictionInterval",
        "Go duration",
        id="kv-bad-batch-interval",
    ),
    pytest.param(
        "kubevirts",
        b.kubevirt,
        _set("spec.workloadUpdateStrategy.batchEvictionSize", True),
        "spec.workloadUpdateStrategy.batchEvictionSize",
        "expected an integer, got boolean",
        id="kv-batch-size-boolean",
    ),
    pytest.param(
        "kubevirts",
        b.kubevirt,
        _set("spec.workloadUpdateStrategy.workloadUpdateMethods", ["LiveMigrate", 2]),
        "spec.workloadUpdateStrategy.workloadUpdateMethods[1]",
        "expected a string",
        id="kv-method-not-a-string",
    ),
    pytest.param(
        "kubevirts",
        b.kubevirt,
        _set("status.observedDeploymentConfig", {"registry": "r"}),
        "status.observedDeploymentConfig",
        "expected a string, got object",
        id="kv-deployment-config-not-a-string",
    ),
    pytest.param(
        "kubevirts",
        b.kubevirt,
        _set("status.conditions.0.lastTransitionTime", "1 Oct"),
        "status.conditions[0].lastTransitionTime",
        "RFC 3339",
        id="kv-bad-available-time",
    ),
    pytest.param(
        "kubevirts",
        b.kubevirt,
        _set("status.outdatedVirtualMachineInstanceWorkloads", 1.5),
        "status.outdatedVirtualMachineInstanceWorkloads",
        "expected an integer, got number",
        id="kv-reported-outdated-not-an-integer",
    ),
]


@pytest.mark.parametrize(("resource", "build", "mutate", "field", "problem"), MALFORMED)
def test_malformed_object_error_names_resource_object_and_field(
    resource: Resource,
    build: Callable[[], dict[str, Any]],
    mutate: Callable[[dict[str, Any]], None],
    field: str,
    problem: str,
) -> None:
    raw = build()
    mutate(raw)
    with pytest.raises(MalformedObject) as caught:
        project(resource, raw)
    error = caught.value
    assert error.resource == resource
    assert error.field == field
    assert problem in str(error)
    assert str(error).startswith(f"{resource} {error.key}: {field}: ")


def test_malformed_error_key_is_namespace_slash_name() -> None:
    raw = b.vmi("vm-1", "default")
    raw["status"]["phase"] = 1
    with pytest.raises(MalformedObject) as caught:
        project_vmi(raw)
    assert (
        str(caught.value)
        == "virtualmachineinstances default/vm-1: status.phase: expected a string, got integer"
    )
    assert caught.value.key == "default/vm-1"


def test_malformed_error_without_a_name_says_unnamed() -> None:
    raw = b.vmi()
    del raw["metadata"]["name"]
    with pytest.raises(MalformedObject) as caught:
        project_vmi(raw)
    assert caught.value.key == "default/<unnamed>"


def test_non_mapping_object_is_malformed() -> None:
    with pytest.raises(MalformedObject, match="expected an object, got array"):
        project("virtualmachines", [1, 2])  # type: ignore[arg-type]  # a bad document, on purpose


def test_null_optional_fields_count_as_absent() -> None:
    raw = b.vmi()
    raw["status"]["nodeName"] = None
    raw["metadata"]["labels"] = None
    raw["status"]["conditions"] = None
    record = project_vmi(raw)
    assert (record.node, record.outdated_label, record.not_migratable_reason) == (
        "",
        False,
        CONDITION_MISSING,
    )


def test_projection_does_not_modify_the_raw_object() -> None:
    raw = b.vmi(changes=["HotVCPUChange"], migration=b.migration_state())
    before = copy.deepcopy(raw)
    project_vmi(raw)
    assert raw == before


# --- scope ----------------------------------------------------------------------------


def test_empty_scope_admits_everything() -> None:
    scope = Scope()
    assert scope.admits("virtualmachineinstances", b.vmi())
    assert scope.admits("virtualmachines", b.vm())
    assert scope.admits("virtualmachineinstancemigrations", b.vmim())
    assert scope.admits("kubevirts", b.kubevirt())


def test_namespace_scope_limits_vmis_vms_and_vmims_but_not_kubevirt() -> None:
    scope = Scope(namespaces=frozenset({"prod"}))
    assert scope.admits("virtualmachineinstances", b.vmi(namespace="prod"))
    assert not scope.admits("virtualmachineinstances", b.vmi(namespace="dev"))
    assert not scope.admits("virtualmachines", b.vm(namespace="dev"))
    assert not scope.admits("virtualmachineinstancemigrations", b.vmim(namespace="dev"))
    assert scope.admits("kubevirts", b.kubevirt(namespace="kubevirt"))


def test_label_selector_applies_to_vmis_only() -> None:
    scope = Scope(label_selector=LabelSelector.parse("team=db"))
    assert scope.admits("virtualmachineinstances", b.vmi(labels={"team": "db"}))
    assert not scope.admits("virtualmachineinstances", b.vmi(labels={"team": "web"}))
    assert scope.admits("virtualmachines", b.vm())
    assert scope.admits("virtualmachineinstancemigrations", b.vmim())


def test_shards_split_vmis_by_uid_and_keep_everything_else() -> None:
    raws = [b.vmi(f"vmi-{index}") for index in range(200)]
    scopes = [Scope(shard=shard, total_shards=3) for shard in range(3)]
    for raw in raws:
        owners = [scope for scope in scopes if scope.admits("virtualmachineinstances", raw)]
        assert len(owners) == 1
        assert owners[0].shard == shard_of(raw["metadata"]["uid"], 3)
    assert all(scope.admits("virtualmachines", b.vm()) for scope in scopes)


def test_scope_reading_a_malformed_vmi_raises_malformed_object() -> None:
    raw = b.vmi()
    raw["metadata"]["labels"] = "team=db"
    with pytest.raises(MalformedObject, match=r"metadata\.labels"):
        Scope(label_selector=LabelSelector.parse("team=db")).admits("virtualmachineinstances", raw)


@pytest.mark.parametrize(("shard", "total"), [(0, 0), (-1, 2), (2, 2)])
def test_scope_rejects_impossible_shards(shard: int, total: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        Scope(shard=shard, total_shards=total)

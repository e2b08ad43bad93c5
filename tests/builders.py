"""Realistic raw KubeVirt objects (as the API server returns them, JSON-decoded) for tests.

Each builder returns a fresh `dict` shaped like a real `kubevirt.io/v1` object: the fields the
exporter reads plus a little of the surrounding bulk (spec.domain, volumes, activePods...) so
tests exercise projection on realistic input. Keyword arguments cover the fields that matter to
the update semantics; anything else can be changed on the returned dict.

Defaults describe the healthy case: a Running, live-migratable VMI owned by a VM with
runStrategy Always, on the current launcher image, under a converged KubeVirt CR whose
observedDeploymentConfig names that image and enables LiveMigrate.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from exporter.model import VmiView

API_VERSION: Final = "kubevirt.io/v1"
NAMESPACE: Final = "default"
KUBEVIRT_NAMESPACE: Final = "kubevirt"

REGISTRY: Final = "quay.io/kubevirt"
OLD_VERSION: Final = "v1.4.0"
NEW_VERSION: Final = "v1.5.0"
#: The launcher image of the current (target) release.
TARGET_IMAGE: Final = f"{REGISTRY}/virt-launcher:{NEW_VERSION}"
#: The launcher image of the previous release (an outdated VMI runs in it).
OLD_IMAGE: Final = f"{REGISTRY}/virt-launcher:{OLD_VERSION}"
#: A digest-pinned target, as OLM/HCO installs set `virtLauncherImage`.
DIGEST_IMAGE: Final = (
    "registry.redhat.io/container-native-virtualization/virt-launcher-rhel9"
    "@sha256:29db41a0505a1d3295b0b4c8bc8e7b6b351b83bece05ee8050ca313a18f55dd8"
)

#: Timestamps used by default (RFC 3339, as metav1.Time serialises).
CREATED: Final = "2024-09-18T19:43:53Z"
RUNNING_SINCE: Final = "2024-09-18T19:43:56Z"
AVAILABLE_SINCE: Final = "2024-10-01T08:00:00Z"
CHANGED_AT: Final = "2024-10-02T09:30:00Z"


def uid_of(kind: str, namespace: str, name: str) -> str:
    """A stable UID per object, so rebuilding the same object gives the same UID."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{namespace}/{name}"))


def condition(
    type_: str,
    status: str = "True",
    *,
    reason: str | None = None,
    message: str | None = None,
    last_transition_time: str | None = None,
) -> dict[str, Any]:
    """A status condition; unset reason/message are omitted and an unset transition time is null
    (as virt-controller writes `lastProbeTime: null, lastTransitionTime: null`)."""
    cond: dict[str, Any] = {
        "lastProbeTime": None,
        "lastTransitionTime": last_transition_time,
        "status": status,
        "type": type_,
    }
    if reason is not None:
        cond["reason"] = reason
    if message is not None:
        cond["message"] = message
    return cond


def owner_reference(
    name: str, *, kind: str = "VirtualMachine", controller: bool = True, namespace: str = NAMESPACE
) -> dict[str, Any]:
    """An ownerReference as virt-controller sets it on the VMIs of a VM."""
    return {
        "apiVersion": API_VERSION,
        "blockOwnerDeletion": True,
        "controller": controller,
        "kind": kind,
        "name": name,
        "uid": uid_of(kind, namespace, name),
    }


def migration_state(
    *,
    start: str | None = "2024-10-03T10:00:00Z",
    end: str | None = None,
    source_node: str = "node-1",
    target_node: str = "node-2",
) -> dict[str, Any]:
    """status.migrationState; the default is a migration in flight (started, not ended)."""
    state: dict[str, Any] = {
        "migrationUid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"migration/{start}")),
        "sourceNode": source_node,
        "targetNode": target_node,
        "sourcePod": "virt-launcher-source-abcde",
        "mode": "PreCopy",
    }
    if start is not None:
        state["startTimestamp"] = start
    if end is not None:
        state["endTimestamp"] = end
        state["completed"] = True
    return state


def vmi(
    name: str = "vmi-1",
    namespace: str = NAMESPACE,
    *,
    uid: str | None = None,
    phase: str | None = "Running",
    node: str | None = "node-1",
    labels: Mapping[str, str] | None = None,
    outdated_label: bool = False,
    launcher_image: str | None = TARGET_IMAGE,
    live_migratable: bool | None = True,
    not_migratable_reason: str = "DisksNotLiveMigratable",
    changes: Iterable[str] = (),
    change_status: str = "True",
    change_since: str | None = CHANGED_AT,
    extra_conditions: Sequence[Mapping[str, Any]] = (),
    migration: Mapping[str, Any] | None = None,
    migrated_volumes: int = 0,
    eviction_strategy: str | None = None,
    owner_vm: str | None = "",
    running_since: str | None = RUNNING_SINCE,
    deletion_timestamp: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A VirtualMachineInstance.

    - `owner_vm`: "" (default) = owned by a VM of the same name; None = standalone.
    - `live_migratable`: True/False sets the LiveMigratable condition (False with
      `not_migratable_reason`); None leaves the condition out.
    - `changes`: condition types to add (HotVCPUChange, HotMemoryChange, MigrationRequired,
      VolumesChange) with `change_status` and `change_since` as lastTransitionTime.
    - `outdated_label`: virt-controller's `kubevirt.io/outdatedLauncherImage` label.
    - `migration`: status.migrationState (see `migration_state`).
    - `migrated_volumes`: number of status.migratedVolumes entries (a volume migration).
    - `phase`, `node`, `launcher_image`, `running_since`: None leaves the field out.
    """
    owner = name if owner_vm == "" else owner_vm
    all_labels: dict[str, str] = {"kubevirt.io/domain": name, "kubevirt.io/size": "small"}
    if node:
        all_labels["kubevirt.io/nodeName"] = node
    if owner:
        all_labels["vm.kubevirt.io/name"] = owner
    if outdated_label:
        all_labels["kubevirt.io/outdatedLauncherImage"] = ""
    all_labels.update(labels or {})

    metadata: dict[str, Any] = {
        "annotations": {"kubevirt.io/latest-observed-api-version": "v1", **(annotations or {})},
        "creationTimestamp": CREATED,
        "finalizers": [
            "kubevirt.io/virtualMachineControllerFinalize",
            "foregroundDeleteVirtualMachine",
        ],
        "generation": 12,
        "labels": all_labels,
        "name": name,
        "namespace": namespace,
        "resourceVersion": "11848215",
        "uid": uid if uid is not None else uid_of("VirtualMachineInstance", namespace, name),
    }
    if owner:
        metadata["ownerReferences"] = [owner_reference(owner, namespace=namespace)]
    if deletion_timestamp is not None:
        metadata["deletionTimestamp"] = deletion_timestamp
        metadata["deletionGracePeriodSeconds"] = 30

    spec: dict[str, Any] = {
        "architecture": "amd64",
        "domain": {
            "cpu": {"cores": 1, "model": "host-model", "sockets": 1, "threads": 1},
            "devices": {
                "disks": [{"disk": {"bus": "virtio"}, "name": "rootdisk"}],
                "interfaces": [{"masquerade": {}, "model": "virtio", "name": "default"}],
            },
            "machine": {"type": "pc-q35-rhel9.2.0"},
            "memory": {"guest": "2Gi"},
            "resources": {"requests": {"memory": "2Gi"}},
        },
        "networks": [{"name": "default", "pod": {}}],
        "terminationGracePeriodSeconds": 180,
        "volumes": [{"dataVolume": {"name": name}, "name": "rootdisk"}],
    }
    if eviction_strategy is not None:
        spec["evictionStrategy"] = eviction_strategy

    conditions: list[Mapping[str, Any]] = [
        condition("Ready", last_transition_time="2024-09-23T16:16:11Z"),
        condition("AgentConnected"),
    ]
    if live_migratable is True:
        conditions.append(condition("LiveMigratable"))
    elif live_migratable is False:
        conditions.append(
            condition(
                "LiveMigratable",
                "False",
                reason=not_migratable_reason,
                message="cannot migrate VMI: PVC is not shared",
            )
        )
    conditions.extend(
        condition(kind, change_status, last_transition_time=change_since) for kind in changes
    )
    conditions.extend(extra_conditions)

    status: dict[str, Any] = {
        "activePods": {uid_of("Pod", namespace, name): node or ""},
        "conditions": conditions,
        "guestOSInfo": {"id": "centos", "name": "CentOS Linux", "version": "7 (Core)"},
        "interfaces": [{"interfaceName": "eth0", "ipAddress": "10.128.1.193", "name": "default"}],
        "migrationMethod": "BlockMigration",
        "migrationTransport": "Unix",
        "phaseTransitionTimestamps": _transitions(phase, running_since),
        "qosClass": "Burstable",
        "volumeStatus": [{"name": "rootdisk", "target": "vda"}],
    }
    if phase is not None:
        status["phase"] = phase
    if node is not None:
        status["nodeName"] = node
    if launcher_image is not None:
        status["launcherContainerImageVersion"] = launcher_image
    if migration is not None:
        status["migrationState"] = dict(migration)
    if migrated_volumes:
        status["migratedVolumes"] = [_migrated_volume(index) for index in range(migrated_volumes)]

    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualMachineInstance",
        "metadata": metadata,
        "spec": spec,
        "status": status,
    }


def _transitions(phase: str | None, running_since: str | None) -> list[dict[str, Any]]:
    entries = [
        {"phase": "Pending", "phaseTransitionTimestamp": CREATED},
        {"phase": "Scheduling", "phaseTransitionTimestamp": CREATED},
        {"phase": "Scheduled", "phaseTransitionTimestamp": "2024-09-18T19:43:55Z"},
    ]
    if running_since is not None:
        entries.append({"phase": "Running", "phaseTransitionTimestamp": running_since})
    if phase in ("Succeeded", "Failed"):
        entries.append({"phase": phase, "phaseTransitionTimestamp": "2024-10-05T00:00:00Z"})
    return entries


def _migrated_volume(index: int) -> dict[str, Any]:
    return {
        "volumeName": f"disk-{index}",
        "sourcePVCInfo": {"claimName": f"src-{index}", "volumeMode": "Filesystem"},
        "destinationPVCInfo": {"claimName": f"dst-{index}", "volumeMode": "Block"},
    }


def vm(
    name: str = "vmi-1",
    namespace: str = NAMESPACE,
    *,
    run_strategy: str | None = "Always",
    running: bool | None = None,
) -> dict[str, Any]:
    """A VirtualMachine (named like its VMI by default). `run_strategy`/`running` None = unset."""
    spec: dict[str, Any] = {
        "dataVolumeTemplates": [
            {
                "apiVersion": "cdi.kubevirt.io/v1beta1",
                "kind": "DataVolume",
                "metadata": {"name": name},
                "spec": {"storage": {"resources": {"requests": {"storage": "30Gi"}}}},
            }
        ],
        "template": {
            "metadata": {"labels": {"kubevirt.io/domain": name}},
            "spec": {"domain": {"devices": {}, "memory": {"guest": "2Gi"}}},
        },
    }
    if run_strategy is not None:
        spec["runStrategy"] = run_strategy
    if running is not None:
        spec["running"] = running
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualMachine",
        "metadata": {
            "creationTimestamp": "2024-04-30T16:22:02Z",
            "finalizers": ["kubevirt.io/virtualMachineControllerFinalize"],
            "generation": 1,
            "labels": {"app": name},
            "name": name,
            "namespace": namespace,
            "resourceVersion": "8398727",
            "uid": uid_of("VirtualMachine", namespace, name),
        },
        "spec": spec,
        "status": {"created": True, "printableStatus": "Running", "ready": True},
    }


def vmim(
    name: str = "migration-job",
    namespace: str = NAMESPACE,
    *,
    vmi_name: str = "vmi-1",
    phase: str | None = "Running",
    workload_update: bool = False,
    annotate: bool = True,
) -> dict[str, Any]:
    """A VirtualMachineInstanceMigration.

    `workload_update=True` makes it look like the updater's: name prefixed
    `kubevirt-workload-update-` and (with `annotate`) the `kubevirt.io/workloadUpdateMigration`
    annotation. `phase` None = no status.phase yet.
    """
    annotations = {"kubevirt.io/latest-observed-api-version": "v1"}
    if workload_update:
        name = (
            name
            if name.startswith("kubevirt-workload-update-")
            else f"kubevirt-workload-update-{name}"
        )
        if annotate:
            annotations["kubevirt.io/workloadUpdateMigration"] = ""
    status: dict[str, Any] = {
        "phaseTransitionTimestamps": [
            {"phase": "Pending", "phaseTransitionTimestamp": "2024-10-03T10:00:00Z"}
        ]
    }
    if phase is not None:
        status["phase"] = phase
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {
            "annotations": annotations,
            "creationTimestamp": "2024-10-03T10:00:00Z",
            "finalizers": ["kubevirt.io/migrationJobFinalize"],
            "generation": 1,
            "labels": {"kubevirt.io/vmi-name": vmi_name},
            "name": name,
            "namespace": namespace,
            "uid": uid_of("VirtualMachineInstanceMigration", namespace, name),
        },
        "spec": {"vmiName": vmi_name},
        "status": status,
    }


def deployment_config(
    *,
    registry: str = REGISTRY,
    image_prefix: str = "",
    version: str = NEW_VERSION,
    launcher_image: str | None = TARGET_IMAGE,
    deployment_id: str = "deploy-new",
) -> str:
    """A `KubeVirtDeploymentConfig` JSON string (keys of kubevirt/kubevirt:
    pkg/virt-operator/util/config.go). `launcher_image` None = no `virtLauncherImage`, as on a
    plain install from the release manifests."""
    config: dict[str, Any] = {
        "id": deployment_id,
        "namespace": KUBEVIRT_NAMESPACE,
        "registry": registry,
        "imagePrefix": image_prefix,
        "kubeVirtVersion": version,
        "virtOperatorImage": f"{registry}/{image_prefix}virt-operator:{version}",
        "additionalProperties": {"ImagePullPolicy": "IfNotPresent"},
    }
    if launcher_image is not None:
        config["virtLauncherImage"] = launcher_image
    return json.dumps(config)


def kubevirt(
    name: str = "kubevirt",
    namespace: str = KUBEVIRT_NAMESPACE,
    *,
    phase: str | None = "Deployed",
    observed_deployment_id: str = "deploy-new",
    target_deployment_id: str | None = None,
    observed_version: str = NEW_VERSION,
    target_version: str = NEW_VERSION,
    update_methods: Sequence[str] | None = ("LiveMigrate",),
    batch_eviction_size: int | None = None,
    batch_eviction_interval: str | None = None,
    eviction_strategy: str | None = None,
    parallel_migrations_per_cluster: int | None = None,
    reported_outdated: int | None = 0,
    observed_deployment_config: str | None = None,
    available_since: str | None = AVAILABLE_SINCE,
    hco: bool = False,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A KubeVirt CR.

    - `target_deployment_id` None = same as observed (converged when `phase` is Deployed).
    - `update_methods` None = no `workloadUpdateStrategy.workloadUpdateMethods` at all.
    - `observed_deployment_config` None = `deployment_config()` with the defaults (exact target
      TARGET_IMAGE); pass "" to leave it out.
    - `hco=True` adds the labels the HyperConverged operator sets on the CR it owns
      (kubevirt/hyperconverged-cluster-operator: pkg/util/util.go `GetLabels`).
    """
    all_labels: dict[str, str] = {}
    if hco:
        all_labels.update(
            {
                "app": "kubevirt-hyperconverged",
                "app.kubernetes.io/component": "compute",
                "app.kubernetes.io/managed-by": "hco-operator",
                "app.kubernetes.io/part-of": "hyperconverged-cluster",
                "app.kubernetes.io/version": "1.14.0",
            }
        )
    all_labels.update(labels or {})

    strategy: dict[str, Any] = {}
    if update_methods is not None:
        strategy["workloadUpdateMethods"] = list(update_methods)
    if batch_eviction_size is not None:
        strategy["batchEvictionSize"] = batch_eviction_size
    if batch_eviction_interval is not None:
        strategy["batchEvictionInterval"] = batch_eviction_interval

    configuration: dict[str, Any] = {"developerConfiguration": {"featureGates": []}}
    if eviction_strategy is not None:
        configuration["evictionStrategy"] = eviction_strategy
    if parallel_migrations_per_cluster is not None:
        configuration["migrations"] = {
            "parallelMigrationsPerCluster": parallel_migrations_per_cluster
        }

    config_json = (
        deployment_config() if observed_deployment_config is None else observed_deployment_config
    )
    status: dict[str, Any] = {
        "conditions": [
            condition(
                "Available",
                reason="AllComponentsReady",
                message="All components are ready.",
                last_transition_time=available_since,
            ),
            condition(
                "Progressing",
                "False",
                reason="AllComponentsReady",
                last_transition_time=available_since,
            ),
            condition(
                "Degraded",
                "False",
                reason="AllComponentsReady",
                last_transition_time=available_since,
            ),
        ],
        "defaultArchitecture": "amd64",
        "observedDeploymentID": observed_deployment_id,
        "targetDeploymentID": observed_deployment_id
        if target_deployment_id is None
        else target_deployment_id,
        "observedKubeVirtRegistry": REGISTRY,
        "observedKubeVirtVersion": observed_version,
        "targetKubeVirtRegistry": REGISTRY,
        "targetKubeVirtVersion": target_version,
        "operatorVersion": target_version,
    }
    if config_json:
        status["observedDeploymentConfig"] = config_json
        status["targetDeploymentConfig"] = config_json
    if phase is not None:
        status["phase"] = phase
    if reported_outdated is not None:
        status["outdatedVirtualMachineInstanceWorkloads"] = reported_outdated

    metadata: dict[str, Any] = {
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "finalizers": ["foregroundDeleteKubeVirt"],
        "generation": 3,
        "name": name,
        "namespace": namespace,
        "uid": uid_of("KubeVirt", namespace, name),
    }
    if all_labels:
        metadata["labels"] = all_labels
    return {
        "apiVersion": API_VERSION,
        "kind": "KubeVirt",
        "metadata": metadata,
        "spec": {
            "certificateRotateStrategy": {},
            "configuration": configuration,
            "customizeComponents": {},
            "imagePullPolicy": "IfNotPresent",
            "workloadUpdateStrategy": strategy,
        },
        "status": status,
    }


def view(name: str = "vm-1", namespace: str = NAMESPACE, **changes: Any) -> VmiView:
    """A derived view (for render/report tests that start from views, not raw objects): Running,
    live-migratable, owned by a VM with runStrategy Always, on the target image and up to date,
    with what LiveMigrate would do for it; `changes` replace any field."""
    base = VmiView(
        namespace=namespace,
        name=name,
        phase="Running",
        node="node-1",
        owner_kind="VirtualMachine",
        run_strategy="Always",
        eviction_strategy="None",
        launcher_image=TARGET_IMAGE,
        outdated=False,
        outdated_reason=None,
        live_migratable=True,
        not_migratable_reason=None,
        method="live_migrate",
        action="wait",
        outdated_since=None,
        update_migration_failures=0,
        verdict_disagreement=False,
        migrating=False,
    )
    return dataclasses.replace(base, **changes)

"""Seeded fleets across the update decision space, for the differential suite (tests/oracle.py).

Contract:
- `generate(seed, count)` is deterministic: the same seed gives the same fleets. Fleets that leave
  the control plane unconverged come first (see `Fleet.converged`).
- A `Fleet` is plain data (one KubeVirt CR policy and its VMIs); `objects()` renders it with
  tests/builders.py into the raw objects to create, `without(names)` drops VMIs (shrinking).
- Every VMI is shaped the way virt-controller leaves it: the `kubevirt.io/outdatedLauncherImage`
  label is set exactly when the launcher image is known and differs from the target
  (kubevirt/kubevirt: pkg/virt-controller/watch/vmi/lifecycle.go `setLauncherContainerInfo`).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from tests import builders

IMAGES: Final = (builders.OLD_IMAGE, builders.TARGET_IMAGE, "")
PHASES: Final = ("Pending", "Scheduled", "Succeeded", "Failed")
NOT_MIGRATABLE_REASONS: Final = (
    "DisksNotLiveMigratable",
    "InterfaceNotLiveMigratable",
    "HostDeviceNotLiveMigratable",
)
CHANGES: Final = ("HotVCPUChange", "HotMemoryChange", "MigrationRequired", "VolumesChange")
EVICTION_STRATEGIES: Final = ("None", "LiveMigrate", "LiveMigrateIfPossible", "External")
RUN_STRATEGIES: Final = ("Always", "RerunOnFailure", "Manual", "Halted", "Once")
VMIM_PHASES: Final = (None, "Pending", "Scheduling", "Running", "Succeeded", "Failed")
UPDATE_METHODS: Final[tuple[tuple[str, ...], ...]] = (
    ("LiveMigrate",),
    ("Evict",),
    ("LiveMigrate", "Evict"),
    (),
)


@dataclass(frozen=True)
class Migration:
    """A VirtualMachineInstanceMigration of the VMI, made by a user or by the updater."""

    phase: str | None
    workload_update: bool


@dataclass(frozen=True)
class VmiCase:
    """One VMI and what surrounds it (owner VM, migrations)."""

    name: str
    node: str
    phase: str
    deleting: bool
    image: str
    #: True / False / None (no LiveMigratable condition)
    live_migratable: bool | None
    not_migratable_reason: str
    #: a second LiveMigratable condition with the opposite status after the first
    duplicate_migratable: bool
    changes: tuple[str, ...]
    change_status: str
    #: "" none, "running" (started, not ended), "ended"
    migration_state: str
    migrated_volumes: int
    storage_not_migratable: bool
    #: a ReadWriteOnce PVC that the volume migration does not move
    rwo_left_behind: bool
    eviction_strategy: str | None
    #: the owner VM's runStrategy, None for a standalone VMI
    run_strategy: str | None
    migrations: tuple[Migration, ...]

    def vmi(self, namespace: str) -> dict[str, Any]:
        extra: list[dict[str, Any]] = []
        if self.duplicate_migratable and self.live_migratable is not None:
            extra.append(
                builders.condition(
                    "LiveMigratable",
                    "False" if self.live_migratable else "True",
                    reason=self.not_migratable_reason if self.live_migratable else None,
                )
            )
        if self.storage_not_migratable:
            extra.append(
                builders.condition(
                    "StorageLiveMigratable", "False", reason="NotMigratable", message="RWO"
                )
            )
        migration = None
        if self.migration_state == "running":
            migration = builders.migration_state(source_node=self.node)
        elif self.migration_state == "ended":
            migration = builders.migration_state(source_node=self.node, end="2024-10-03T10:05:00Z")
        obj = builders.vmi(
            self.name,
            namespace,
            phase=self.phase,
            node=self.node,
            launcher_image=self.image or None,
            outdated_label=self.image not in ("", builders.TARGET_IMAGE),
            live_migratable=self.live_migratable,
            not_migratable_reason=self.not_migratable_reason,
            changes=self.changes,
            change_status=self.change_status,
            extra_conditions=extra,
            migration=migration,
            migrated_volumes=self.migrated_volumes,
            eviction_strategy=self.eviction_strategy,
            owner_vm="" if self.run_strategy is not None else None,
        )
        if self.migrated_volumes:
            # The migrated ReadWriteOnce PVC, and maybe one left behind.
            names = ["disk-0", *(["left-behind"] if self.rwo_left_behind else [])]
            obj["status"]["volumeStatus"] += [
                {
                    "name": name,
                    "target": f"vd{chr(ord('b') + index)}",
                    "persistentVolumeClaimInfo": {
                        "claimName": name,
                        "accessModes": ["ReadWriteOnce"],
                    },
                }
                for index, name in enumerate(names)
            ]
        return obj

    def vm(self, namespace: str) -> dict[str, Any] | None:
        if self.run_strategy is None:
            return None
        return builders.vm(self.name, namespace, run_strategy=self.run_strategy)

    def vmims(self, namespace: str) -> list[dict[str, Any]]:
        return [
            builders.vmim(
                f"{self.name}-m{index}",
                namespace,
                vmi_name=self.name,
                phase=migration.phase,
                workload_update=migration.workload_update,
            )
            for index, migration in enumerate(self.migrations)
        ]


@dataclass(frozen=True)
class Fleet:
    """One KubeVirt CR policy and the VMIs under it."""

    seed: int
    index: int
    #: "" converged; "deploying" (phase not Deployed); "rollout" (observed != target deployment)
    unconverged: str
    update_methods: tuple[str, ...]
    eviction_strategy: str | None
    #: whether status.observedDeploymentConfig publishes the exact virtLauncherImage
    publish_target: bool
    vmis: tuple[VmiCase, ...]

    @property
    def converged(self) -> bool:
        return not self.unconverged

    @property
    def kubevirt_name(self) -> str:
        return f"kubevirt-{self.seed}-{self.index}"

    def kubevirt(self) -> dict[str, Any]:
        """The KubeVirt CR: one round of the updater covers the whole fleet (migrations and
        evictions far above the fleet size), and the next fleet may evict a second later."""
        return builders.kubevirt(
            self.kubevirt_name,
            builders.KUBEVIRT_NAMESPACE,
            phase="Deploying" if self.unconverged == "deploying" else "Deployed",
            target_deployment_id="deploy-next" if self.unconverged == "rollout" else None,
            update_methods=self.update_methods,
            eviction_strategy=self.eviction_strategy,
            parallel_migrations_per_cluster=1000,
            batch_eviction_size=1000,
            batch_eviction_interval="1s",
            reported_outdated=None,
            observed_deployment_config=None if self.publish_target else "",
        )

    def without(self, names: Iterable[str]) -> Fleet:
        dropped = set(names)
        return dataclasses.replace(
            self, vmis=tuple(case for case in self.vmis if case.name not in dropped)
        )

    def describe(self) -> str:
        return (
            f"fleet seed={self.seed} index={self.index} unconverged={self.unconverged or '-'} "
            f"methods={list(self.update_methods)} cluster_eviction={self.eviction_strategy} "
            f"publish_target={self.publish_target}"
        )


def _vmi_case(rng: random.Random, name: str) -> VmiCase:
    running = rng.random() < 0.8
    live: bool | None = rng.choices([True, False, None], weights=[45, 40, 15])[0]
    migrated = 1 if rng.random() < 0.15 else 0
    migrations: list[Migration] = []
    if rng.random() < 0.22:
        for _ in range(rng.choice((1, 1, 2))):
            migrations.append(Migration(rng.choice(VMIM_PHASES), rng.random() < 0.5))
    return VmiCase(
        name=name,
        node=rng.choice(("node-1", "node-2")),
        phase="Running" if running else rng.choice(PHASES),
        deleting=rng.random() < 0.08,
        image=rng.choices(IMAGES, weights=[45, 40, 15])[0],
        live_migratable=live,
        not_migratable_reason=rng.choice(NOT_MIGRATABLE_REASONS),
        duplicate_migratable=rng.random() < 0.08,
        changes=tuple(change for change in CHANGES if rng.random() < 0.1),
        change_status=rng.choices(("True", "False"), weights=[80, 20])[0],
        migration_state=rng.choices(("", "running", "ended"), weights=[85, 10, 5])[0],
        migrated_volumes=migrated,
        storage_not_migratable=bool(migrated) and rng.random() < 0.3,
        rwo_left_behind=bool(migrated) and rng.random() < 0.4,
        eviction_strategy=rng.choice((None, None, *EVICTION_STRATEGIES)),
        run_strategy=rng.choice((None, *RUN_STRATEGIES)),
        migrations=tuple(migrations),
    )


def generate(
    seed: int, count: int, *, unconverged: int = 2, size: tuple[int, int] = (10, 16)
) -> list[Fleet]:
    """`count` fleets from `seed`; the first `unconverged` leave the control plane unconverged."""
    rng = random.Random(seed)
    fleets = []
    for index in range(count):
        vmis = tuple(
            _vmi_case(rng, f"vmi-{index}-{number}") for number in range(rng.randint(*size))
        )
        fleets.append(
            Fleet(
                seed=seed,
                index=index,
                unconverged=(("deploying", "rollout")[index % 2] if index < unconverged else ""),
                update_methods=UPDATE_METHODS[index % len(UPDATE_METHODS)],
                eviction_strategy=rng.choice((None, None, *EVICTION_STRATEGIES)),
                publish_target=rng.random() < 0.7,
                vmis=vmis,
            )
        )
    return fleets

"""Whether a VMI's volume migration is one the workload updater completes by live migration.

Contract: `volume_migration(reader, status, name)` reads a VMI's raw `status` (through
`exporter.rawobject.Reader`, so a wrong shape is `MalformedObject`) and mirrors upstream's
`ValidateVolumesUpdateMigration` as `getUpdateData` calls it (kubevirt/kubevirt:
pkg/virt-controller/watch/volume-migration/volume-migration.go,
pkg/virt-controller/watch/workload-updater/workload-updater.go). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from exporter.rawobject import Reader

CONDITION_STORAGE_LIVE_MIGRATABLE: Final = "StorageLiveMigratable"
#: Prefix of the backend-storage PVC's volume (kubevirt/kubevirt:
#: pkg/storage/backend-storage/backend-storage.go `PVCPrefix`, `basePVC`).
BACKEND_STORAGE_PVC_PREFIX: Final = "persistent-state-for-"
#: Access modes that make a PVC shared; any other set is ReadWriteOnce for a volume migration
#: (kubevirt/kubevirt: pkg/storage/types/pvc.go `IsReadWriteOnceAccessMode`).
SHARED_ACCESS_MODES: Final = frozenset({"ReadOnlyMany", "ReadWriteMany"})


def volume_migration(reader: Reader, status: Mapping[str, Any], name: str) -> bool:
    """A volume migration the workload updater would complete by live migration: migrated
    volumes are listed, no `StorageLiveMigratable=False` condition, and every ReadWriteOnce PVC
    of the VMI (but its backend-storage PVC) is among them (kubevirt/kubevirt:
    pkg/virt-controller/watch/volume-migration/volume-migration.go
    `ValidateVolumesUpdateMigration`, as `getUpdateData` calls it); found by the differential
    test."""
    migrated = reader.array(status, "migratedVolumes", "status")
    if not migrated:
        return False
    for path, condition in reader.items(status, "conditions", "status"):
        if (
            reader.string(condition, "type", path) == CONDITION_STORAGE_LIVE_MIGRATABLE
            and reader.string(condition, "status", path) == "False"
        ):
            return False
    moving = {
        reader.string(volume, "volumeName", path)
        for path, volume in reader.items(status, "migratedVolumes", "status")
    }
    volumes = list(reader.items(status, "volumeStatus", "status"))
    backend = ""
    for path, volume in volumes:
        if BACKEND_STORAGE_PVC_PREFIX + name in (reader.string(volume, "name", path) or ""):
            claim = reader.mapping(volume, "persistentVolumeClaimInfo", path)
            backend = reader.string(claim, "claimName", path) or ""
            break
    for path, volume in volumes:
        claim = reader.mapping(volume, "persistentVolumeClaimInfo", path)
        if not claim:
            continue
        volume_name = reader.string(volume, "name", path)
        if volume_name == backend:
            continue
        modes = reader.array(claim, "accessModes", f"{path}.persistentVolumeClaimInfo")
        if not SHARED_ACCESS_MODES & set(modes) and volume_name not in moving:
            return False
    return True

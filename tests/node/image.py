"""The exporter's container image, built by scripts/build-image, and a podman to run it with.

Contract:
- `build_image()` runs scripts/build-image (bases from Debian packages, then the Dockerfile with
  buildah; cached, rebuilt only when the build context changes) and returns the image archive, a
  docker archive any engine loads. A failed build raises `ImageError` with the script's output.
- `Podman(root)` is podman with its own storage under `root` (vfs driver), runc as the runtime
  (crun refuses these machines' hybrid cgroups) and explicit file/process limits (podman's
  defaults exceed what these machines grant); `close()` removes every container it started.
"""

from __future__ import annotations

import resource
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from exporter import __version__
from tests.cluster import REPO

#: The name and tag the archive carries (scripts/build-image: localhost/<name>:<version>).
IMAGE_REPOSITORY = "localhost/kubevirt-update-exporter"


class ImageError(RuntimeError):
    """The image could not be built or run; the message carries the tool's output."""


def build_image() -> Path:
    """The docker archive of the exporter image, building it first when missing or stale."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-image")], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ImageError(f"scripts/build-image failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def image_tag() -> str:
    """The tag scripts/build-image gives the image: the project's version."""
    return __version__


@dataclass
class Podman:
    """podman with private storage under `root`; see the module docstring."""

    root: Path
    containers: list[str] = field(default_factory=list)

    def __call__(self, *args: str, check: bool = True, timeout: float = 300.0) -> str:
        argv = [
            "podman",
            "--root", str(self.root / "storage"),
            "--runroot", str(self.root / "run"),
            "--storage-driver", "vfs",
            "--runtime", "runc",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "none",
            *args,
        ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
        if check and proc.returncode != 0:
            raise ImageError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc.stdout.strip()

    def run(self, *args: str) -> str:
        """`podman run -d` with explicit limits; returns the container id (removed on close)."""
        # What this process may have, not podman's defaults (more than these machines grant).
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
        container = self(
            "run", "-d",
            "--ulimit", f"nofile={nofile}:{nofile}",
            "--ulimit", f"nproc={nproc}:{nproc}",
            *args,
        )  # fmt: skip
        self.containers.append(container)
        return container

    def close(self) -> None:
        """Remove every container this instance started."""
        for container in self.containers:
            self("rm", "--force", "--time", "5", container, check=False)
        self.containers.clear()

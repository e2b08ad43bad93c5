"""The image built from the Dockerfile runs as nobody on a read-only root and serves a snapshot.

scripts/build-image builds it (Debian-package bases, then `buildah bud` on the Dockerfile); these
tests load the archive into a private podman and run it the way the chart does. A build or run
failure fails the test with the tool's output.
"""

from __future__ import annotations

import json
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import REPO, free_port
from tests.exporter_process import ExporterProcess, eventually, parse_exposition
from tests.node.image import IMAGE_REPOSITORY, Podman, build_image, image_tag

pytestmark = pytest.mark.node

SNAPSHOT = REPO / "examples" / "cluster-snapshot.yaml"


@pytest.fixture(scope="module")
def archive() -> Path:
    return build_image()


@pytest.fixture(scope="module")
def podman(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    engine = Podman(tmp_path_factory.mktemp("podman"))
    engine("load", "--quiet", "--input", str(archive))
    try:
        yield engine
    finally:
        engine.close()


def fetch(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:  # an unready 503 holds the connection until closed
            return err.code, err.read().decode()


def exporter_families(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The exporter's own series (kubevirt_update_*), without process-dependent self-metrics."""
    return {
        key: value
        for key, value in parse_exposition(text).items()
        if key[0].startswith("kubevirt_update_")
        and not key[0].startswith("kubevirt_update_exporter")
    }


def test_the_archive_holds_one_tagged_image_of_two_layers(archive: Path) -> None:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        (manifest,) = json.load(member)
        config_file = tar.extractfile(manifest["Config"])
        assert config_file is not None
        config = json.load(config_file)["config"]
    assert manifest["RepoTags"] == [f"{IMAGE_REPOSITORY}:{image_tag()}"]
    # The runtime base and the one COPY of the venv: no RUN in the final stage.
    assert len(manifest["Layers"]) == 2
    assert config["User"] == "65534:65534"
    assert config["Entrypoint"] == ["/opt/venv/bin/kubevirt-update-exporter"]
    assert config["Labels"]["org.opencontainers.image.version"] == image_tag()


def test_the_image_serves_a_mounted_snapshot_as_nobody_on_a_read_only_root(
    podman: Podman, tmp_path: Path
) -> None:
    port = free_port()
    container = podman.run(
        "--read-only",
        "--network", "host",
        "--volume", f"{SNAPSHOT}:/snapshot.yaml:ro",
        f"{IMAGE_REPOSITORY}:{image_tag()}",
        "serve", "--snapshot", "/snapshot.yaml", "--listen", f"127.0.0.1:{port}",
    )  # fmt: skip
    eventually(
        lambda: fetch(port, "/readyz")[0] == 200,
        timeout=120,
        what=f"the container's /readyz\n{podman('logs', container, check=False)}",
    )
    status, served = fetch(port, "/metrics")
    assert status == 200

    pid = podman("inspect", "--format", "{{.State.Pid}}", container)
    ids = {
        line.split(":")[0]: line.split()[1:]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith(("Uid:", "Gid:"))
    }
    assert ids == {"Uid": ["65534"] * 4, "Gid": ["65534"] * 4}
    assert podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", container) == "true"

    # Nothing in the image can write its root or install anything.
    probe = (
        "import importlib.util, sys\n"
        "try:\n    open('/opt/venv/x', 'w')\nexcept OSError as err:\n    print(err.errno)\n"
        "print(importlib.util.find_spec('pip'), importlib.util.find_spec('ensurepip'))\n"
        "print(sys.executable, sys.version_info[:2])\n"
        "import os\n"
        "print([p for p in ('/bin/sh', '/usr/bin/apt', '/usr/bin/dpkg') if os.path.exists(p)])\n"
    )
    out = podman("exec", container, "/opt/venv/bin/python", "-c", probe).splitlines()
    assert out[0] == "30"  # EROFS
    assert out[1] == "None None"
    assert out[2] == "/opt/venv/bin/python (3, 11)"
    assert out[3] == "[]"  # no shell, no package manager

    with ExporterProcess(["--snapshot", str(SNAPSHOT)], workdir=tmp_path) as local:
        local.wait_ready()
        expected = local.get("/metrics")[1]
    assert exporter_families(served) == exporter_families(expected)
    assert len(exporter_families(served)) > 100

"""The README's first screen tells the truth: a real /metrics sample, and CI's test command."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

from tests.cluster import REPO, free_port
from tests.exporter_process import ExporterProcess, eventually, parse_exposition

README = (REPO / "README.md").read_text()


def readme_block(language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", README, re.DOTALL)
    assert match, f"no ```{language} block in README.md"
    return match.group(1)


def test_readme_metrics_sample_is_real_output_of_the_bundled_snapshot(tmp_path: Path) -> None:
    sample = parse_exposition(readme_block("text"))
    assert len(sample) >= 10
    args = ["--snapshot", str(REPO / "examples" / "cluster-snapshot.yaml")]
    with ExporterProcess(args, workdir=tmp_path) as proc:
        proc.wait_ready()
        real = proc.scrape()
    stale = {key: value for key, value in sample.items() if real.get(key) != value}
    assert not stale, f"README sample lines not in the real output (refresh them): {stale}"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = [
        line for line in readme_block("sh").splitlines() if line and not line.startswith("#")
    ]
    assert commands[-1] == "scripts/test"
    ci = (REPO / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line.startswith("exec ")] == ["exec scripts/test"]


#: The Python a fresh Debian 12 / Ubuntu 24.04 machine has: its `pip install` outside a virtualenv
#: is refused (PEP 668, "externally-managed-environment").
SYSTEM_PYTHON = Path("/usr/bin/python3")
POSTGRES_OUTDATED = 'kubevirt_update_vmi_outdated{namespace="db-prod",name="postgres-primary"} 1'
#: pip fetches the dependencies from the package index: generous on a shared machine.
INSTALL_TIMEOUT = 600.0


def readme_run_command() -> str:
    """The README's first command: the first line of its sh block that is not a comment."""
    return next(
        line for line in readme_block("sh").splitlines() if line and not line.startswith("#")
    )


def test_readme_run_command_works_as_written_with_the_system_python(tmp_path: Path) -> None:
    # A copy of the repository as a user clones it (tracked files only, no .venv), and the exact
    # command with the distribution's python3 first on PATH; only the port is a free one.
    run = readme_run_command()
    assert "--snapshot examples/cluster-snapshot.yaml --listen 127.0.0.1:8080" in run
    assert SYSTEM_PYTHON.is_file(), f"{SYSTEM_PYTHON} is missing: the test needs the system python"
    managed = list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED"))
    assert managed, "the system python is not PEP 668 managed: this test would prove nothing"
    clone = tmp_path / "clone"
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(SYSTEM_PYTHON)
    port = free_port()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    for name in ("http_proxy", "https_proxy", "no_proxy", "PIP_INDEX_URL", "SSL_CERT_FILE"):
        if name in os.environ:
            env[name] = os.environ[name]
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            ["bash", "-c", run.replace("127.0.0.1:8080", f"127.0.0.1:{port}")],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        body = eventually(
            lambda: _metrics(port, popen, log),
            timeout=INSTALL_TIMEOUT,
            what=f"the README command ({log})",
        )
        assert POSTGRES_OUTDATED in body
    finally:
        os.killpg(popen.pid, signal.SIGTERM)
        popen.wait(timeout=60)
    assert (clone / ".venv" / "bin" / "kubevirt-update-exporter").is_file()
    assert "externally-managed-environment" not in log.read_text()


def _metrics(port: int, popen: subprocess.Popen[bytes], log: Path) -> str:
    if popen.poll() is not None:  # not an AssertionError: `eventually` must stop trying
        raise RuntimeError(f"the README command exited {popen.returncode}:\n{log.read_text()}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    assert POSTGRES_OUTDATED in text  # the snapshot is loaded
    return text

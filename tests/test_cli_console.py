"""The installed `kubevirt-update-exporter` console script, run as a user runs it.

Each test is a case a new user met: a snapshot that lacks kinds, an empty or foreign file, a
broken snapshot with a closed log reader, kubeconfig resolution, a mistyped namespace,
inconsistent flags and errors. They run the console script next to the test interpreter (the
venv's `bin/kubevirt-update-exporter`), never the Python functions behind it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "cluster-snapshot.yaml"
EXE = Path(sys.executable).with_name("kubevirt-update-exporter")
PREFIX = "kubevirt-update-exporter: "
#: Generous bounds: the machine is shared with long builds.
RUN_TIMEOUT = 120.0
READY_TIMEOUT = 120.0


def console(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run the console script with `args`; its exit code, stdout and stderr."""
    assert EXE.is_file(), f"the console script is not installed: {EXE}"
    environ = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(EXE), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def example_objects() -> list[dict[str, Any]]:
    """Every object of the bundled example snapshot."""
    return [
        item
        for document in yaml.safe_load_all(EXAMPLE.read_text())
        if document
        for item in document.get("items") or [document]
    ]


def write_list(path: Path, items: Sequence[Mapping[str, Any]], *, kind: str = "List") -> Path:
    """`items` as `kubectl get -o yaml` prints them: one List."""
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": kind, "items": list(items)}))
    return path


def only(kinds: set[str]) -> list[dict[str, Any]]:
    """The example's objects of `kinds`."""
    return [o for o in example_objects() if o["kind"] in kinds]


# -- a broken snapshot under `serve` -----------------------------------------------------------


def late_broken_snapshot(tmp_path: Path) -> Path:
    """A snapshot that parses for a while (so `serve` is listening) and then is not YAML."""
    documents = [
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{a: b}}\n"
        for i in range(20000)
    ]
    path = tmp_path / "late-broken.yaml"
    path.write_text("---\n".join(documents) + "---\nitems: [\n")
    return path


def test_serve_on_a_broken_snapshot_exits_1_when_its_log_reader_has_gone(tmp_path: Path) -> None:
    # `serve ... 2>&1 | head -2`: the reader leaves after "listening"; the failure's log line
    # meets a closed pipe. The process must still stop, with exit code 1.
    snapshot = late_broken_snapshot(tmp_path)
    argv = [str(EXE), "--snapshot", str(snapshot), "--listen", f"127.0.0.1:{free_port()}"]
    popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert popen.stdout is not None
        assert b"serve.starting" in popen.stdout.readline()
        assert b"serve.listening" in popen.stdout.readline()
        popen.stdout.close()
        assert popen.wait(timeout=RUN_TIMEOUT) == 1
    finally:
        popen.kill()
        popen.wait()


def test_serve_on_a_broken_snapshot_logs_one_error_line_naming_the_file(tmp_path: Path) -> None:
    snapshot = late_broken_snapshot(tmp_path)
    result = console(
        "--snapshot",
        str(snapshot),
        "--listen",
        f"127.0.0.1:{free_port()}",
        env={"KUBEVIRT_UPDATE_EXPORTER_LOG_FORMAT": "json"},
    )
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1, errors
    assert str(snapshot) in errors[0]["error"]
    assert "document 20000" in errors[0]["error"]
    assert "exception" not in errors[0]
    assert "Traceback" not in result.stderr

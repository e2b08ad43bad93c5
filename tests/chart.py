"""Render the Helm chart with the real `helm` binary, for the chart tests.

Contract: `helm_binary()` installs the pinned helm through `scripts/install-tools` when it is
missing and returns its path, raising `ChartError` (with the script's output) when it cannot: a
chart test without helm fails, it never skips. `render()` runs `helm template` and returns the
rendered objects as dicts, raising `ChartError` with helm's stderr when rendering fails (a
schema rejection included).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kubevirt-update-exporter"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "kue"
NAMESPACE = "monitoring"

Obj = dict[str, Any]


class ChartError(RuntimeError):
    """helm could not be installed, or refused to render; the message carries its stderr."""


@cache
def helm_binary() -> Path:
    """The pinned helm, installed into the per-version tools cache on first use."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "install-tools")], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ChartError(f"scripts/install-tools failed ({proc.returncode}):\n{proc.stderr}")
    helm = Path(proc.stdout.strip().splitlines()[-1]) / "helm"
    if not helm.is_file():
        raise ChartError(f"scripts/install-tools printed {proc.stdout!r}, but {helm} is missing")
    return helm


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run helm with `args`; the caller checks the return code."""
    return subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, check=False, timeout=120
    )


def template_args(
    values: Iterable[Path] = (), sets: Sequence[str] = (), namespace: str = NAMESPACE
) -> list[str]:
    """Arguments of `helm template` for the chart with these values files and --set pairs."""
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    for path in values:
        args += ["--values", str(path)]
    for pair in sets:
        args += ["--set", pair]
    return args


def render(
    values: Iterable[Path] = (), sets: Sequence[str] = (), namespace: str = NAMESPACE
) -> list[Obj]:
    """The objects `helm template` renders (empty documents dropped)."""
    proc = helm(*template_args(values, sets, namespace))
    if proc.returncode != 0:
        raise ChartError(f"helm template failed ({proc.returncode}):\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def of_kind(objects: Iterable[Obj], kind: str) -> list[Obj]:
    """The objects of one kind."""
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: Iterable[Obj], kind: str) -> Obj:
    """The single object of `kind`; fails when there are none or several."""
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def ci_values(name: str) -> Path:
    """The path of ci/<name>-values.yaml."""
    path = CHART / "ci" / f"{name}-values.yaml"
    assert path.is_file(), f"missing chart scenario {path}"
    return path

"""The README's development notes name every layer of the import contract, so they cannot drift."""

from __future__ import annotations

import re
import tomllib

from tests import REPO


def layered_modules() -> set[str]:
    """The modules the `layers` contract of the `exporter` package places."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c for c in contracts if c["type"] == "layers" and c["containers"] == ["exporter"]]
    return {name.strip() for layer in layers["layers"] for name in layer.split("|")}


def test_the_layers_contract_places_every_module_of_the_package() -> None:
    top_level = {p.stem for p in (REPO / "exporter").glob("*.py")} - {"__init__"}
    packages = {p.parent.name for p in (REPO / "exporter").glob("*/__init__.py")}
    assert layered_modules() == top_level | packages


def test_readme_development_notes_name_every_layered_module() -> None:
    readme = (REPO / "README.md").read_text()
    notes = readme.split("## Development notes", 1)[1]
    named = set(re.findall(r"`(\w+)/?`", notes))
    assert layered_modules() <= named, layered_modules() - named

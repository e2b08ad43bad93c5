"""`selection`: the row filters of `report` and `plan`."""

from __future__ import annotations

from exporter.model import Method
from exporter.selection import Selection
from tests.cli.test_report import view


def test_selection_admits_by_every_filter() -> None:
    method: Method = "none"
    chosen = Selection(
        namespaces=frozenset({"a"}), actions=frozenset({"manual"}), methods=frozenset({method})
    )
    assert chosen.admits(view(namespace="a", method="none", action="manual"))
    assert not chosen.admits(view(namespace="b", method="none", action="manual"))
    assert not chosen.admits(view(namespace="a", method="evict", action="manual"))
    assert not chosen.admits(view(namespace="a", method="none", action="restart"))

"""Which VMIs `report` and `plan` show: the row filters of their command lines.

Contract: pure; `Selection.admits(view)` is True when the view passes every non-empty filter, so
an empty selection (`EVERYTHING`) admits every VMI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from exporter.model import Action, Method, VmiView


@dataclass(frozen=True)
class Selection:
    """Row filters of `report`/`plan`; an empty set admits everything."""

    namespaces: frozenset[str] = field(default_factory=frozenset)
    actions: frozenset[Action] = field(default_factory=frozenset)
    methods: frozenset[Method] = field(default_factory=frozenset)

    def admits(self, view: VmiView) -> bool:
        """The view passes every non-empty filter."""
        return (
            (not self.namespaces or view.namespace in self.namespaces)
            and (not self.actions or view.action in self.actions)
            and (not self.methods or view.method in self.methods)
        )


#: The selection that admits every VMI.
EVERYTHING: Final = Selection()

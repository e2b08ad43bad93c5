"""Kubernetes label selectors: the `--label-selector` grammar and its matching.

Contract: `LabelSelector.parse` accepts the Kubernetes label-selector grammar (`k=v`, `k==v`,
`k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>n`, `k<n`; k8s.io/apimachinery:
pkg/labels/selector.go) and rejects anything else with a `ValueError` naming the bad term;
`matches(labels)` applies Kubernetes semantics (`!=` and `notin` also match a missing label).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

#: Label key: optional DNS-subdomain prefix and '/', then a name of at most 63 characters
#: (k8s.io/apimachinery: pkg/util/validation `IsQualifiedName`).
_LABEL_NAME: Final = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY: Final = re.compile(
    rf"(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}"
)
_LABEL_VALUE: Final = re.compile(rf"(?:{_LABEL_NAME})?")
_SET_TERM: Final = re.compile(r"(\S+?)\s+(in|notin)\s*\((.*)\)", re.DOTALL)
_COMPARE_TERM: Final = re.compile(r"([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(.*)", re.DOTALL)
_INTEGER: Final = re.compile(r"-?[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a label selector."""

    key: str
    #: "=", "!=", "in", "notin", "exists", "!", ">" or "<" ("==" is stored as "=").
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics: `!=` and `notin` also match objects without the label."""
        value = labels.get(self.key)
        match self.operator:
            case "exists":
                return value is not None
            case "!":
                return value is None
            case "=" | "in":
                return value in self.values
            case "!=" | "notin":
                return value not in self.values
            case _:
                return self._compare(value)

    def _compare(self, value: str | None) -> bool:
        if value is None or _INTEGER.fullmatch(value) is None:
            return False
        (bound,) = self.values
        return int(value) > int(bound) if self.operator == ">" else int(value) < int(bound)


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed `--label-selector`; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    @staticmethod
    def parse(text: str) -> LabelSelector:
        """Parse the Kubernetes selector grammar; raises ValueError naming the bad term."""
        return LabelSelector(tuple(_requirement(term) for term in _terms(text)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """All requirements hold for `labels`."""
        return all(requirement.matches(labels) for requirement in self.requirements)


def _terms(text: str) -> list[str]:
    """Split on the commas that are not inside a value set."""
    terms: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
            if depth > 1:
                raise ValueError(f"invalid label selector {text!r}: nested '('")
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"invalid label selector {text!r}: unbalanced ')'")
        elif char == "," and depth == 0:
            terms.append(text[start:index])
            start = index + 1
    if depth:
        raise ValueError(f"invalid label selector {text!r}: unbalanced '('")
    terms.append(text[start:])
    if len(terms) == 1 and not terms[0].strip():
        return []
    return terms


def _requirement(term: str) -> Requirement:
    text = term.strip()
    if not text:
        raise _bad_term(term, "empty term")
    if text.startswith("!"):
        return Requirement(_key(text[1:].strip(), term), "!")
    if match := _SET_TERM.fullmatch(text):
        values = [value.strip() for value in match.group(3).split(",")]
        if values == [""]:
            raise _bad_term(term, f"'{match.group(2)}' needs at least one value")
        return Requirement(
            _key(match.group(1), term),
            match.group(2),
            frozenset(_value(value, term) for value in values),
        )
    if match := _COMPARE_TERM.fullmatch(text):
        key, operator, value = _key(match.group(1), term), match.group(2), match.group(3).strip()
        if operator in (">", "<"):
            if _INTEGER.fullmatch(value) is None:
                raise _bad_term(term, f"'{operator}' needs an integer, got {value!r}")
            return Requirement(key, operator, frozenset((value,)))
        return Requirement(
            key, "=" if operator == "==" else operator, frozenset((_value(value, term),))
        )
    return Requirement(_key(text, term), "exists")


def _key(key: str, term: str) -> str:
    if _LABEL_KEY.fullmatch(key) is None or len(key.partition("/")[0]) > 253:
        raise _bad_term(term, f"{key!r} is not a valid label key")
    return key


def _value(value: str, term: str) -> str:
    if _LABEL_VALUE.fullmatch(value) is None:
        raise _bad_term(term, f"{value!r} is not a valid label value")
    return value


def _bad_term(term: str, why: str) -> ValueError:
    return ValueError(f"invalid label selector term {term.strip()!r}: {why}")

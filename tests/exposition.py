"""A strict little parser of the Prometheus text format (0.0.4), for order-insensitive golden tests.

`parse(text)` checks what the format requires and what our contract adds (HELP and TYPE once per
family and before its samples, a family's samples contiguous, no duplicate series, no sample
timestamps, label values escaped) and returns the families and samples to compare as sets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Labels = frozenset[tuple[str, str]]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class Sample:
    """One sample line."""

    name: str
    labels: Labels
    value: float

    def label(self, name: str) -> str:
        """The value of one label ("" when absent, as Prometheus reads it)."""
        return dict(self.labels).get(name, "")


@dataclass
class Exposition:
    """A parsed exposition."""

    #: family name -> (type, help), in order of appearance.
    families: dict[str, tuple[str, str]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)

    def of(self, name: str) -> list[Sample]:
        """The samples of one family."""
        return [s for s in self.samples if s.name == name]

    def series(self, name: str | None = None) -> set[tuple[str, Labels, float]]:
        """Samples as comparable tuples (of one family, or all)."""
        return {(s.name, s.labels, s.value) for s in self.samples if name is None or s.name == name}

    def without(self, *prefixes: str) -> set[tuple[str, Labels, float]]:
        """Samples as tuples, leaving out the families whose name starts with one of `prefixes`."""
        return {t for t in self.series() if not t[0].startswith(prefixes)}


#: The self-metrics of the process (they change between two scrapes of the same fleet).
SELF_METRICS = ("kubevirt_update_exporter_", "process_", "python_")


def labels(**values: str) -> Labels:
    """A label set for comparisons."""
    return frozenset(values.items())


def series(family: str, value: float, /, **values: str) -> tuple[str, Labels, float]:
    """One expected sample as a comparable tuple."""
    return (family, labels(**values), value)


def parse(text: str | bytes) -> Exposition:
    """Parse and check an exposition; raises AssertionError naming the first problem."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    assert text == "" or text.endswith("\n"), "the exposition must end with a newline"
    result = Exposition()
    finished: set[str] = set()
    current: str | None = None
    seen: set[tuple[str, Labels]] = set()
    helps: dict[str, str] = {}
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        where = f"line {number}: {line[:120]!r}"
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert name not in helps, f"{where}: second HELP for {name}"
            assert help_text.strip(), f"{where}: empty HELP"
            helps[name] = help_text
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name in helps, f"{where}: TYPE before HELP"
            assert name not in result.families, f"{where}: second TYPE for {name}"
            assert kind in ("gauge", "counter"), f"{where}: unexpected type"
            if current is not None:
                finished.add(current)
            current = name
            result.families[name] = (kind, helps[name])
            continue
        assert not line.startswith("#"), f"{where}: unexpected comment"
        sample = _sample(line, where)
        assert current is not None and sample.name == current, (
            f"{where}: sample outside its family block (current family {current})"
        )
        assert sample.name not in finished, f"{where}: family {sample.name} is not contiguous"
        identity = (sample.name, sample.labels)
        assert identity not in seen, f"{where}: duplicate series"
        seen.add(identity)
        result.samples.append(sample)
    return result


def _sample(line: str, where: str) -> Sample:
    match = _NAME.match(line)
    assert match, f"{where}: no metric name"
    name, position = match.group(), match.end()
    values: dict[str, str] = {}
    if line[position : position + 1] == "{":
        position += 1
        while line[position] != "}":
            label = _LABEL_NAME.match(line, position)
            assert label, f"{where}: bad label name at {position}"
            position = label.end()
            assert line[position : position + 2] == '="', f'{where}: expected =" at {position}'
            value, position = _label_value(line, position + 2, where)
            assert label.group() not in values, f"{where}: repeated label {label.group()}"
            values[label.group()] = value
            if line[position] == ",":
                position += 1
        position += 1
    rest = line[position:]
    assert rest.startswith(" "), f"{where}: no space before the value"
    parts = rest.split()
    assert len(parts) == 1, f"{where}: a sample has exactly one value and no timestamp"
    return Sample(name, frozenset(values.items()), float(parts[0]))


def _label_value(line: str, position: int, where: str) -> tuple[str, int]:
    out: list[str] = []
    while True:
        char = line[position]
        if char == '"':
            return "".join(out), position + 1
        if char == "\\":
            escaped = line[position + 1]
            assert escaped in _UNESCAPE, f"{where}: bad escape \\{escaped}"
            out.append(_UNESCAPE[escaped])
            position += 2
            continue
        out.append(char)
        position += 1


def family_order(exposition: Exposition) -> list[str]:
    """Family names in order of appearance."""
    return list(exposition.families)


def label_sets(samples: Iterable[Sample], *names: str) -> set[tuple[str, ...]]:
    """The values of `names` in each sample."""
    return {tuple(s.label(n) for n in names) for s in samples}


def as_dict(samples: Iterable[Sample], *names: str) -> Mapping[tuple[str, ...], float]:
    """Sample values keyed by the values of `names`."""
    return {tuple(s.label(n) for n in names): s.value for s in samples}

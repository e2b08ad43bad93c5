"""Render on change, serve by concatenation: VMI views in, exposition text out.

Contract:
- `RenderStore.put(view)` renders the series of one VMI when what it shows differs from what the
  store holds (otherwise it returns False and renders nothing); `remove(key)` drops every series
  of that VMI. Nothing is formatted per VMI when the body is assembled.
- `chunks()` is the exposition (text format 0.0.4) of every served family of the metric table
  except the self-metrics, as a list of bytes to be written in order; `body(tail)` is the same
  joined, followed by `tail` (the self-metrics). HELP and TYPE once per family, in table order, each
  family's samples contiguous, label values escaped (backslash, double quote, newline), no
  timestamps. Each family's text is cached and rebuilt only after a change that touches it (by
  joining pre-rendered pieces, as kube-state-metrics writes its stores' cached lines), or after
  `release_text()`; `generation` counts changes, so callers can cache what they derive (the gzip
  of it).
- Dense per-VMI series exist for every VMI put and not removed, with a label set that never
  changes with the value; sparse ones only while their condition holds (METRICS.md).
- Aggregates follow every put/remove, except `kubevirt_update_outdated_vmis`, which follows
  only while the control plane is converged and otherwise holds the value it had when
  convergence was lost (none before the first convergence), as virt-controller's gauge does: it
  is recounted only in `sync`, which `execute` skips unless the CR is Deployed with
  observedDeploymentID == targetDeploymentID
  (kubevirt/kubevirt:pkg/virt-controller/watch/workload-updater/workload-updater.go).
- Per-KubeVirt families come from `set_kubevirts`, only with `emit_kubevirt_series` (shard 0);
  `kubevirt_update_kubevirt_reported_outdated_vmis` only when not `scoped`.
- Memory bounds a 100k-VMI fleet, so a VMI costs one `namespace=..,name=..` label fragment (its
  ident, shared with the cache) in one dict, plus its timestamp/count lines; everything else it
  shows is a state shared with the VMIs that show the same (docs/benchmarks.md has the figures).

Longer than most modules: the store and the pre-rendered pieces it joins are one design, whose
private layout (states, groups, suffixes) is what keeps a VMI small; split, it would be public.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, repeat
from typing import Final

from exporter import metrics
from exporter.derive import is_converged
from exporter.identity import escape_label_value, vmi_ident
from exporter.metrics import SERVE_ALL, Family, MetricFilter
from exporter.model import CONDITION_MISSING, UPDATE_METHODS, ControlPlane, Key, KubeVirt, VmiView

_ONE: Final = b"} 1\n"
_ZERO: Final = b"} 0\n"


def format_value(value: float) -> str:
    """A sample value as the text format writes it (integers without a fraction)."""
    if isinstance(value, int):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def family_header(family: Family) -> bytes:
    """The HELP and TYPE lines of a family."""
    text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {family.name} {text}\n# TYPE {family.name} {family.type}\n".encode()


def sample_line(family: Family, values: Sequence[str], value: float) -> bytes:
    """One sample of `family` with its label values in table order."""
    if len(values) != len(family.labels):
        raise ValueError(f"{family.name}: {len(values)} label values for {family.labels}")
    labels = ",".join(
        f'{name}="{escape_label_value(v)}"' for name, v in zip(family.labels, values, strict=True)
    )
    braces = f"{{{labels}}}" if labels else ""
    return f"{family.name}{braces} {format_value(value)}\n".encode()


# --- per-VMI pieces ----------------------------------------------------------------------------
# A per-VMI line is `name{` + ident + suffix: ident is `namespace="..",name=".."` (one bytes object
# per VMI, shared by all its series) and suffix the rest of the labels, `}`, the value, newline.
# Everything a VMI shows except its ident and its timestamp/count lines is a `_State`; VMIs with
# equal states share one `_Group`. To rebuild a family, the VMIs are bucketed by group and each
# bucket is written as `name{` + (suffix + `name{`).join(idents) + suffix.


@lru_cache(maxsize=8192)
def _info_suffix(node: str, owner_kind: str, run_strategy: str, eviction_strategy: str) -> bytes:
    return (
        f',node="{escape_label_value(node)}",owner_kind="{escape_label_value(owner_kind)}"'
        f',run_strategy="{escape_label_value(run_strategy)}"'
        f',eviction_strategy="{escape_label_value(eviction_strategy)}"}} 1\n'
    ).encode()


@lru_cache(maxsize=1024)
def _reason_suffix(reason: str) -> bytes:
    return f',reason="{escape_label_value(reason)}"}} 1\n'.encode()


@lru_cache(maxsize=64)
def _state_suffix(method: str, action: str) -> bytes:
    labels = f'method="{escape_label_value(method)}",action="{escape_label_value(action)}"'
    return f",{labels}}} 1\n".encode()


@lru_cache(maxsize=4096)
def _value_suffix(value: float) -> bytes:
    return f"}} {format_value(value)}\n".encode()


@lru_cache(maxsize=1024)
def _outdated_labels(reason: str, method: str, action: str) -> tuple[str, str, str]:
    """One tuple per distinct labels: states are made while decoded objects are alive, and a
    tuple of its own per state would keep a mostly freed block pool each (docs/benchmarks.md)."""
    return (reason, method, action)


@dataclass(frozen=True, slots=True)
class _State:
    """What a VMI shows besides its identity and per-VMI lines (shared by equal VMIs)."""

    #: Line suffixes of the grouped families (None: no series).
    info: bytes
    outdated: bytes
    live_migratable: bytes
    outdated_reason: bytes | None
    not_live_migratable: bytes | None
    update_state: bytes | None
    #: Aggregate contributions: (reason, method, action) while outdated; the reason while not
    #: live-migratable; the launcher image while Running; the verdict disagreement.
    outdated_labels: tuple[str, str, str] | None
    not_migratable_reason: str | None
    running_image: str | None
    disagreement: bool


def _state_of(view: VmiView) -> _State:
    not_migratable = None if view.live_migratable else view.not_migratable_reason
    if not view.live_migratable and not not_migratable:
        not_migratable = CONDITION_MISSING
    outdated = (
        _outdated_labels(view.outdated_reason or "", view.method, view.action)
        if view.outdated
        else None
    )
    return _State(
        info=_info_suffix(view.node, view.owner_kind, view.run_strategy, view.eviction_strategy),
        outdated=_ONE if view.outdated else _ZERO,
        live_migratable=_ONE if view.live_migratable else _ZERO,
        outdated_reason=None if outdated is None else _reason_suffix(outdated[0]),
        not_live_migratable=None if not_migratable is None else _reason_suffix(not_migratable),
        update_state=None if outdated is None else _state_suffix(view.method, view.action),
        outdated_labels=outdated,
        not_migratable_reason=not_migratable,
        running_image=view.launcher_image if view.phase == "Running" else None,
        disagreement=view.verdict_disagreement,
    )


class _Group:
    """The canonical object of one state, with the number of VMIs showing it."""

    __slots__ = ("size", "state")

    def __init__(self, state: _State) -> None:
        self.state = state
        self.size = 0


#: Families whose lines come from groups: the suffix of a state (None: no series).
_GROUPED: Final[Mapping[Family, Callable[[_State], bytes | None]]] = {
    metrics.VMI_INFO: lambda state: state.info,
    metrics.VMI_OUTDATED: lambda state: state.outdated,
    metrics.VMI_LIVE_MIGRATABLE: lambda state: state.live_migratable,
    metrics.VMI_OUTDATED_REASON: lambda state: state.outdated_reason,
    metrics.VMI_NOT_LIVE_MIGRATABLE: lambda state: state.not_live_migratable,
    metrics.VMI_UPDATE_STATE: lambda state: state.update_state,
}


def _since_suffix(view: VmiView) -> bytes | None:
    if not view.outdated or view.outdated_since is None:
        return None
    return _value_suffix(view.outdated_since)


def _failures_suffix(view: VmiView) -> bytes | None:
    if view.update_migration_failures <= 0:
        return None
    return _value_suffix(view.update_migration_failures)


#: Families with a line per VMI (values that rarely repeat): the suffix of a view.
_PER_LINE: Final[Mapping[Family, Callable[[VmiView], bytes | None]]] = {
    metrics.VMI_OUTDATED_SINCE: _since_suffix,
    metrics.VMI_UPDATE_MIGRATION_FAILURES: _failures_suffix,
}


def _prefix(family: Family) -> bytes:
    return f"{family.name}{{".encode()


def _grouped_text(
    family: Family,
    suffix_of: Callable[[_State], bytes | None],
    buckets: Mapping[_Group, list[bytes]],
) -> bytes:
    prefix = _prefix(family)
    out: list[bytes] = []
    for group, idents in buckets.items():
        suffix = suffix_of(group.state)
        if suffix is not None and idents:
            out.append(prefix)
            out.append((suffix + prefix).join(idents))
            out.append(suffix)
    return b"".join(out)


# --- aggregates -------------------------------------------------------------------------------


class _Counts:
    """Counts per label-value tuple; a tuple whose count drops to 0 is forgotten."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[tuple[str, ...], int] = {}

    def add(self, labels: tuple[str, ...], delta: int) -> None:
        n = self.counts.get(labels, 0) + delta
        if n:
            self.counts[labels] = n
        else:
            del self.counts[labels]


def _aggregate_text(family: Family, counts: Mapping[tuple[str, ...], int]) -> bytes:
    return b"".join(sample_line(family, labels, n) for labels, n in sorted(counts.items()))


# --- per-KubeVirt families --------------------------------------------------------------------


def kubevirt_texts(kubevirts: Sequence[KubeVirt], *, scoped: bool) -> dict[str, bytes]:
    """The samples of every per-KubeVirt family, by family name."""
    ordered = sorted(kubevirts, key=lambda kv: (kv.namespace, kv.name))
    lines: dict[str, list[bytes]] = {}

    def emit(family: Family, values: Sequence[str], value: float) -> None:
        lines.setdefault(family.name, []).append(sample_line(family, values, value))

    for kv in ordered:
        ident = (kv.namespace, kv.name)
        emit(
            metrics.KUBEVIRT_INFO,
            (
                *ident,
                kv.observed_version,
                kv.target_version,
                kv.target_launcher_image,
                "hco" if kv.hco_managed else "",
            ),
            1,
        )
        emit(metrics.KUBEVIRT_CONVERGED, ident, int(is_converged(kv)))
        for method in UPDATE_METHODS:
            emit(
                metrics.KUBEVIRT_METHOD_ENABLED, (*ident, method), int(method in kv.update_methods)
            )
        emit(metrics.KUBEVIRT_BATCH_EVICTION_SIZE, ident, kv.batch_eviction_size)
        emit(metrics.KUBEVIRT_BATCH_EVICTION_INTERVAL, ident, kv.batch_eviction_interval_seconds)
        if not scoped and kv.reported_outdated is not None:
            emit(metrics.KUBEVIRT_REPORTED_OUTDATED, ident, kv.reported_outdated)
    emit(metrics.KUBEVIRT_CRS, (), len(ordered))
    return {name: b"".join(chunk) for name, chunk in lines.items()}


# --- the store --------------------------------------------------------------------------------


class RenderStore:
    """Pre-rendered series of every VMI plus aggregates and per-KubeVirt series; see module doc."""

    def __init__(
        self,
        metric_filter: MetricFilter = SERVE_ALL,
        *,
        emit_kubevirt_series: bool = True,
        scoped: bool = False,
    ) -> None:
        self._served = tuple(
            f
            for f in metric_filter.served()
            if f.group != "exporter" and (f.group != "kubevirt" or emit_kubevirt_series)
        )
        self._headers = {f: family_header(f) for f in self._served}
        self._scoped = scoped
        #: namespace -> ident -> group: the one container per VMI.
        self._entries: dict[str, dict[bytes, _Group]] = {}
        self._groups: dict[_State, _Group] = {}
        #: Per-line families: ident -> line suffix.
        self._lines: dict[Family, dict[bytes, bytes]] = {family: {} for family in _PER_LINE}
        self._outdated = _Counts()
        self._vmis = _Counts()
        self._not_migratable = _Counts()
        self._images = _Counts()
        #: The published outdated counts while not converged; None while converged (live).
        self._held: dict[tuple[str, ...], int] | None = {}
        self._kubevirt_texts: dict[str, bytes] = kubevirt_texts((), scoped=scoped)
        #: Cached text of each per-VMI family; a family is dropped from it when a change
        #: touches it. Aggregates and per-KubeVirt texts are rebuilt per generation.
        self._segments: dict[Family, bytes] = {}
        self._chunks: list[bytes] | None = None
        self._count_vmis = 0
        #: Changes so far (any put/remove that changed what is shown, any KubeVirt change).
        self.generation = 0
        #: VMI renders so far (puts that changed what the VMI shows).
        self.renders = 0
        #: VMIs whose outdated label and image cross-check disagree now.
        self.verdict_disagreements = 0

    def __len__(self) -> int:
        return self._count_vmis

    def __contains__(self, key: Key) -> bool:
        inner = self._entries.get(key[0])
        return inner is not None and vmi_ident(*key) in inner

    def put(self, view: VmiView, ident: bytes | None = None) -> bool:
        """Show `view` for its VMI; False (and no render) when it shows what is already shown.

        `ident` is `identity.vmi_ident(view.namespace, view.name)`; pass the cache's object so
        that both hold one.
        """
        ns = view.namespace
        if ident is None:
            ident = vmi_ident(ns, view.name)
        state = _state_of(view)
        lines = {family: suffix_of(view) for family, suffix_of in _PER_LINE.items()}
        inner = self._entries.get(ns)
        old = None if inner is None else inner.get(ident)
        unchanged = old is not None and old.state == state and self._same_lines(ident, lines)
        if inner is not None and old is not None and unchanged:
            self._rekey(inner, ident, old)
            return False
        self._leave(ns, ident, old, state)
        self._join(ns, ident, state, lines)
        self.renders += 1
        return True

    def remove(self, key: Key) -> bool:
        """Drop every series of the VMI `key` (namespace, name); False when not held."""
        ns, name = key
        inner = self._entries.get(ns)
        ident = vmi_ident(ns, name)
        old = None if inner is None else inner.get(ident)
        if old is None:
            return False
        self._leave(ns, ident, old, None)
        return True

    def set_kubevirts(self, kubevirts: Sequence[KubeVirt], cp: ControlPlane) -> None:
        """Follow a change of the KubeVirt CRs; call it BEFORE putting the views derived from
        `cp`, so that losing convergence holds the counts as they were."""
        if cp.converged:
            self._held = None
        elif self._held is None:
            self._held = dict(self._outdated.counts)
        self._kubevirt_texts = kubevirt_texts(kubevirts, scoped=self._scoped)
        self._changed()

    def outdated_counts(self) -> Mapping[tuple[str, ...], int]:
        """What `kubevirt_update_outdated_vmis` shows now (held or live)."""
        return self._outdated.counts if self._held is None else self._held

    def chunks(self) -> list[bytes]:
        """The exposition of every served non-self family, in pieces to write in order."""
        if self._chunks is None:
            buckets = None
            if any(f in _GROUPED and f not in self._segments for f in self._served):
                buckets = self._buckets()
            chunks: list[bytes] = []
            for family in self._served:
                chunks.append(self._headers[family])
                chunks.append(self._segment(family, buckets))
            self._chunks = chunks
        return self._chunks

    def body(self, tail: Sequence[bytes] = ()) -> bytes:
        """`chunks()` joined, then `tail`."""
        return b"".join([*self.chunks(), *tail])

    @property
    def text_bytes(self) -> int:
        """Bytes of per-VMI family text cached now."""
        return sum(len(text) for text in self._segments.values())

    def release_text(self) -> None:
        """Forget the cached family texts; the next `chunks()` builds them again. Chunks handed
        out before stay valid (they are immutable)."""
        self._segments.clear()
        self._chunks = None

    # --- internals ------------------------------------------------------------------------------

    def _same_lines(self, ident: bytes, lines: Mapping[Family, bytes | None]) -> bool:
        return all(self._lines[family].get(ident) == suffix for family, suffix in lines.items())

    def _rekey(self, inner: dict[bytes, _Group], ident: bytes, group: _Group) -> None:
        """Hold the VMI under this ident object (a dict keeps its first key object otherwise)."""
        del inner[ident]
        inner[ident] = group
        for lines in self._lines.values():
            suffix = lines.pop(ident, None)
            if suffix is not None:
                lines[ident] = suffix

    def _leave(self, ns: str, ident: bytes, old: _Group | None, new: _State | None) -> None:
        """Take the VMI out of everything (its old group, lines and counts)."""
        for family, suffix_of in _GROUPED.items():
            before = None if old is None else suffix_of(old.state)
            after = None if new is None else suffix_of(new)
            if before != after:
                self._segments.pop(family, None)
        for family, lines in self._lines.items():
            if lines.pop(ident, None) is not None:
                self._segments.pop(family, None)
        if old is None:
            return
        old.size -= 1
        if not old.size:
            del self._groups[old.state]
        inner = self._entries[ns]
        del inner[ident]
        if not inner:
            del self._entries[ns]
        self._count(ns, old.state, -1)
        self._count_vmis -= 1
        self._changed()

    def _join(
        self, ns: str, ident: bytes, state: _State, lines: Mapping[Family, bytes | None]
    ) -> None:
        group = self._groups.get(state)
        if group is None:
            group = self._groups[state] = _Group(state)
        group.size += 1
        self._entries.setdefault(ns, {})[ident] = group
        for family, suffix in lines.items():
            if suffix is not None:
                self._lines[family][ident] = suffix
                self._segments.pop(family, None)
        self._count(ns, state, 1)
        self._count_vmis += 1
        self._changed()

    def _changed(self) -> None:
        self.generation += 1
        self._chunks = None

    def _count(self, ns: str, state: _State, sign: int) -> None:
        self._vmis.add((ns,), sign)
        if state.not_migratable_reason is not None:
            self._not_migratable.add((ns, state.not_migratable_reason), sign)
        if state.running_image is not None:
            self._images.add((state.running_image,), sign)
        if state.outdated_labels is not None:
            self._outdated.add((ns, *state.outdated_labels), sign)
        if state.disagreement:
            self.verdict_disagreements += sign

    def _buckets(self) -> dict[_Group, list[bytes]]:
        """The idents of every VMI, by group."""
        buckets: dict[_Group, list[bytes]] = {group: [] for group in self._groups.values()}
        for inner in self._entries.values():
            for ident, group in inner.items():
                buckets[group].append(ident)
        return buckets

    def _segment(self, family: Family, buckets: Mapping[_Group, list[bytes]] | None) -> bytes:
        cached = self._segments.get(family)
        if cached is not None:
            return cached
        suffix_of = _GROUPED.get(family)
        if suffix_of is not None:
            if buckets is None:
                buckets = self._buckets()
            text = _grouped_text(family, suffix_of, buckets)
        elif family in self._lines:
            lines = self._lines[family]
            text = b"".join(
                chain.from_iterable(zip(repeat(_prefix(family)), lines, lines.values()))
            )
        elif family.group == "aggregate":
            return _aggregate_text(family, self._aggregate(family))
        else:
            return self._kubevirt_texts.get(family.name, b"")
        self._segments[family] = text
        return text

    def _aggregate(self, family: Family) -> Mapping[tuple[str, ...], int]:
        if family is metrics.OUTDATED_VMIS:
            return self.outdated_counts()
        if family is metrics.VMIS:
            return self._vmis.counts
        if family is metrics.NOT_LIVE_MIGRATABLE_VMIS:
            return self._not_migratable.counts
        return self._images.counts

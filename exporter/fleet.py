"""The Fleet: raw objects in, the /metrics body and the VMI views out.

Contract:
- Each raw object is projected once (`objects.project`). An object outside the `Scope` is
  ignored, and one that leaves it (a MODIFIED that no longer matches) is dropped. A malformed
  object is counted (`malformed_objects_total`), logged as `object.malformed` with the
  `MalformedObject` text, and the record known before it is KEPT.
- A relist (`relist_begin`, `relist_page`..., `relist_end`) REPLACES a kind: pages are applied as
  they arrive, and what no page contained is dropped at the end; the first completed relist of a
  kind marks it synced. `missing()` names the kinds not synced yet, with their last problem.
- After every change the views of exactly the affected VMIs (`cache.Cache`) are derived again
  and re-rendered. When one change affects many VMIs (a new control plane, a relist dropping a
  namespace) they are settled in slices by `run_settler()` so the event loop never stalls; until
  then the body may show their previous state for a moment (eventual consistency, as in
  kube-state-metrics). Without a running settler, the body settles everything first.
- `body_chunks()` is the whole /metrics text (per-VMI series, aggregates, per-KubeVirt series,
  self-metrics) as a list of bytes to write in order: the render store's cached family texts
  (rebuilt only after a change that touches them) plus the self-metrics. `body()` is the same
  joined, which copies tens of megabytes at 100k VMIs: servers should write the chunks.
  `body_gzip_chunks()` is gzip (level 1) of the same text, as pieces to write in order;
  `body_gzip()` the same joined. The per-VMI part is compressed once per generation, however
  many scrapes ask at once (one compresses, the others wait and share the result), in the
  caller's thread (a worker thread is fine: the Fleet's state lock is never held while
  compressing); per scrape only the self-metrics are compressed, a few kilobytes, never a copy
  of the body.
- `views()` derives the view of every VMI afresh (for report and plan; seconds at 100k VMIs).
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import structlog

from exporter.cache import Cache
from exporter.derive import derive
from exporter.identity import vmi_ident
from exporter.metrics import SERVE_ALL, MetricFilter
from exporter.model import (
    OBJECT_EVENTS,
    RESOURCES,
    ControlPlane,
    Key,
    KubeVirt,
    Resource,
    Vmi,
    Vmim,
    VmiView,
)
from exporter.objects import MalformedObject, Scope, project
from exporter.render import RenderStore
from exporter.selfmetrics import SelfMetrics

log = structlog.get_logger(__name__)

#: A change affecting more VMIs than this is settled in slices by the settler.
DEFER_ABOVE: Final = 256
#: VMIs settled per slice: ~10-20 ms of derive + render, well inside the 100 ms stall budget.
SETTLE_SLICE: Final = 250
#: gzip level of `body_gzip`: level 1 compresses the highly repetitive exposition ~10x at a
#: fraction of the CPU of the default level 6.
GZIP_LEVEL: Final = 1
#: A gzip member header (RFC 1952): deflate, no name or time, "fastest" (XFL 4), unknown OS.
GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"


class Fleet:
    """The exporter's state and its exposition; see the module contract."""

    def __init__(
        self,
        *,
        scope: Scope,
        metrics: SelfMetrics,
        allow: MetricFilter | None = None,
        emit_kubevirt_series: bool | None = None,
        scoped: bool | None = None,
        on_first_sync: Callable[[], None] | None = None,
        text_for_identity_only: bool = False,
        on_text_built: Callable[[], object] | None = None,
    ) -> None:
        """`emit_kubevirt_series` defaults to "this is shard 0"; `scoped` (no
        reported-outdated count) defaults to "the scope limits namespaces or labels";
        `text_for_identity_only`: see `body_gzip_chunks` (for a fleet that rarely changes);
        `on_text_built` is called after an identity scrape built the text from nothing there."""
        self._scope = scope
        self._text_for_identity_only = text_for_identity_only
        self._on_text_built = on_text_built
        self._metrics = metrics
        self._cache = Cache()
        self._store = RenderStore(
            allow or SERVE_ALL,
            emit_kubevirt_series=scope.shard == 0
            if emit_kubevirt_series is None
            else emit_kubevirt_series,
            scoped=bool(scope.namespaces) or scope.label_selector is not None
            if scoped is None
            else scoped,
        )
        self._kubevirt_changes = 0
        self._pending: dict[Key, None] = {}
        #: Set while VMIs are pending; exists while the settler runs (bound to its loop).
        self._pending_event: asyncio.Event | None = None
        #: Per kind being relisted: the identities (`identity.vmi_ident`) its pages contained.
        self._relisting: dict[Resource, set[bytes]] = {}
        self._synced: dict[Resource, bool] = dict.fromkeys(RESOURCES, False)
        self._problems: dict[Resource, str | None] = dict.fromkeys(RESOURCES)
        self._lock = threading.Lock()
        #: Every kind listed once and the VMIs of those lists settled (see `missing`).
        self._ready_once = False
        self._on_first_sync = on_first_sync
        self._gzip: GzipHead | None = None
        #: The generation an identity scrape last asked for: its text is kept (see
        #: `body_gzip_chunks`).
        self._text_asked = -1
        #: Held while the per-VMI part is compressed: one compression per generation.
        self._gzip_lock = threading.Lock()

    # --- events ---------------------------------------------------------------------------------

    def apply(self, resource: Resource, event_type: str, raw: Mapping[str, Any]) -> None:
        """Apply one ADDED/MODIFIED/DELETED watch event (other types are ignored)."""
        if event_type not in OBJECT_EVENTS:
            return
        with self._lock:
            self._apply(resource, event_type, raw)

    def relist_begin(self, resource: Resource) -> None:
        """Start a full list of `resource` that will replace what the cache holds of it."""
        self._relisting[resource] = set()

    def relist_page(self, resource: Resource, raws: Sequence[Mapping[str, Any]]) -> list[int]:
        """Apply one page of the list; return the positions in `raws` of objects whose key an
        earlier object of this list had (the last one wins; an API server never lists an object
        twice, a snapshot file may)."""
        seen = self._relisting.setdefault(resource, set())
        repeated: list[int] = []
        with self._lock:
            for position, raw in enumerate(raws):
                key = self._apply(resource, "ADDED", raw)
                if key is not None:
                    # The cache's own ident object when it has one: no copy per object.
                    ident = self._cache.ident(key) or vmi_ident(*key)
                    if ident in seen:
                        repeated.append(position)
                    else:
                        seen.add(ident)
        return repeated

    def relist_end(self, resource: Resource) -> None:
        """Finish the list: drop what it did not contain; the kind is synced from now on."""
        seen = self._relisting.pop(resource, set())
        with self._lock:
            gone = self._cache.unseen(resource, seen)
            affected: set[Key] = set()
            for key in gone:
                affected.update(self._cache.delete(resource, key))
            self._settle(resource, affected)
            self._synced[resource] = True
            self._problems[resource] = None
            self._metrics.set_synced(resource, True)
            self._note_first_sync()
        log.info("fleet.relisted", resource=resource, objects=len(seen), dropped=len(gone))

    def set_problem(self, resource: Resource, problem: str | None) -> None:
        """What currently keeps `resource` from being listed (None: nothing)."""
        self._problems[resource] = problem

    # --- state ----------------------------------------------------------------------------------

    def missing(self) -> list[str]:
        """What keeps us unready: each kind not listed yet, with its last problem; once all are
        listed, the VMIs of those first lists still being settled (never again afterwards, so a
        later control-plane change does not make us unready)."""
        out = []
        for resource in RESOURCES:
            if self._synced[resource]:
                continue
            problem = self._problems[resource]
            out.append(f"{resource}: not listed yet" + (f" ({problem})" if problem else ""))
        if not out and not self._ready_once:
            out.append(f"settling {len(self._pending)} VMIs of the first lists")
        return out

    def views(self) -> list[VmiView]:
        """The view of every VMI in the cache, by namespace and name."""
        with self._lock:
            self._settle_all()
            views = [self._derive(vmi) for vmi in self._cache.vmis()]
        return sorted(views, key=lambda view: (view.namespace, view.name))

    @property
    def control_plane(self) -> ControlPlane:
        """The update policy derived from every KubeVirt CR seen."""
        return self._cache.control_plane

    @property
    def kubevirts(self) -> list[KubeVirt]:
        """Every KubeVirt CR seen, by namespace and name."""
        return [kv for _, kv in sorted(self._cache.kubevirts.items())]

    @property
    def migrations(self) -> list[Vmim]:
        """Every migration in the cache, by namespace and name."""
        return [vmim for _, vmim in sorted(self._cache.vmims.items())]

    @property
    def renders(self) -> int:
        """VMI renders so far (a VMI is rendered when its view changes)."""
        return self._store.renders

    @property
    def pending(self) -> int:
        """VMIs whose view awaits the settler."""
        return len(self._pending)

    @property
    def text_bytes(self) -> int:
        """Bytes of per-VMI exposition text held for identity scrapes (see `body_gzip_chunks`)."""
        with self._lock:
            return self._store.text_bytes

    # --- exposition -----------------------------------------------------------------------------

    def body(self) -> bytes:
        """The whole /metrics text (per-VMI series, aggregates, per-KubeVirt, self-metrics)."""
        return b"".join(self.body_chunks())

    def body_chunks(self) -> list[bytes]:
        """`body()` as pieces to write in order, without joining tens of megabytes per scrape.

        The pieces are immutable and stay valid after the Fleet changes.
        """
        with self._lock:
            self._settle_unattended()
            started = time.perf_counter()
            self._text_asked = self._store.generation
            from_nothing = self._text_for_identity_only and not self._store.text_bytes
            chunks = [*self._store.chunks(), self._metrics.render()]
            self._metrics.set_render_duration(time.perf_counter() - started)
        if from_nothing and self._on_text_built is not None:
            self._on_text_built()
        return chunks

    def body_gzip(self) -> bytes:
        """gzip (level 1) of `body()`; safe to call from a worker thread."""
        return b"".join(self.body_gzip_chunks())

    def body_gzip_chunks(self) -> list[bytes]:
        """`body_gzip()` as pieces to write in order; safe to call from a worker thread.

        The first piece, the compressed per-VMI part, is shared by every scrape of a generation.
        With `text_for_identity_only`, the text it was compressed from is then released unless
        an identity scrape asked for this generation: Prometheus asks for gzip, and the text is
        460-710 B per VMI against 20-35 B compressed; an identity scrape builds it again
        (100-170 ms at 100,000 VMIs) and keeps it for its generation. Only for a fleet that
        rarely changes (a snapshot): where the fleet changes between scrapes, the text is kept so
        that a change rebuilds only the families it touched (docs/benchmarks.md).
        """
        with self._gzip_lock:
            with self._lock:
                self._settle_unattended()
                generation = self._store.generation
                cached = self._gzip
                stale = cached is None or cached.generation != generation
                chunks = self._store.chunks() if stale else []
            if cached is None or stale:
                cached = self._gzip = GzipHead.of(generation, chunks)
                del chunks
                with self._lock:
                    if self._text_for_identity_only and self._text_asked != generation:
                        self._store.release_text()
        with self._lock:
            tail = self._metrics.render()
        return cached.finish(tail)

    # --- settling -------------------------------------------------------------------------------

    async def run_settler(self) -> NoReturn:
        """Settle deferred VMIs in slices, yielding to the event loop between slices; forever."""
        event = self._pending_event = asyncio.Event()
        try:
            while True:
                if not self._pending:
                    event.clear()
                    await event.wait()
                with self._lock:
                    self._settle_slice(SETTLE_SLICE)
                await asyncio.sleep(0)
        finally:
            self._pending_event = None

    # --- internals (the caller holds the lock) -------------------------------------------------

    def _apply(self, resource: Resource, event_type: str, raw: Mapping[str, Any]) -> Key | None:
        """Apply one object; the key it concerns when known (a malformed one counts as seen)."""
        key = key_of(raw)
        try:
            if event_type == "DELETED":
                if key is None:
                    raise MalformedObject(resource, "<unnamed>", "metadata.name", "missing")
                self._settle(resource, self._cache.delete(resource, key))
                return key
            if not self._scope.admits(resource, raw):
                if key is not None:
                    self._settle(resource, self._cache.delete(resource, key))
                return None
            record = project(resource, raw)
        except MalformedObject as error:
            self._metrics.malformed(resource)
            log.warning(
                "object.malformed", resource=resource, event_type=event_type, error=str(error)
            )
            return key
        self._settle(resource, self._cache.upsert(record))
        return (record.namespace, record.name)

    def _settle(self, resource: Resource, affected: Collection[Key]) -> None:
        if self._cache.kubevirt_changes != self._kubevirt_changes:
            self._kubevirt_changes = self._cache.kubevirt_changes
            # Before the views change: losing convergence must hold the counts as they were.
            self._store.set_kubevirts(list(self._cache.kubevirts.values()), self.control_plane)
        if len(affected) > DEFER_ABOVE:
            self._pending.update(dict.fromkeys(affected))
            if self._pending_event is not None:
                self._pending_event.set()
        else:
            for key in affected:
                self._pending.pop(key, None)
                self._refresh(key)
        self._metrics.set_objects(resource, self._cache.count(resource))
        self._metrics.set_verdict_disagreements(self._store.verdict_disagreements)

    def _refresh(self, key: Key) -> None:
        vmi = self._cache.vmi(key)
        if vmi is None:
            self._store.remove(key)
        else:
            self._store.put(self._derive(vmi), self._cache.ident(key))

    def _derive(self, vmi: Vmi) -> VmiView:
        return derive(
            vmi,
            vm=self._cache.vm_of(vmi),
            migrations=self._cache.migrations_of((vmi.namespace, vmi.name)),
            cp=self._cache.control_plane,
        )

    def _settle_slice(self, count: int) -> None:
        for _ in range(min(count, len(self._pending))):
            key, _ = self._pending.popitem()
            self._refresh(key)
        if not self._pending:
            # A dict never shrinks as it empties: after the first lists this one would keep a
            # table sized for the whole fleet (~30 B per VMI) for ever.
            self._pending = {}
        self._metrics.set_verdict_disagreements(self._store.verdict_disagreements)
        self._note_first_sync()

    def _note_first_sync(self) -> None:
        """The first time every kind is listed and settled: ready from now on."""
        if self._ready_once or self._pending or not all(self._synced.values()):
            return
        self._ready_once = True
        log.info("fleet.ready", vmis=self._cache.count("virtualmachineinstances"))
        if self._on_first_sync is not None:
            self._on_first_sync()

    def _settle_all(self) -> None:
        if self._pending:
            self._settle_slice(len(self._pending))

    def _settle_unattended(self) -> None:
        if self._pending_event is None:
            self._settle_all()


@dataclass(frozen=True, slots=True)
class GzipHead:
    """The per-VMI part of one generation's body, compressed: a gzip header and deflate blocks
    ending on a byte boundary (a sync flush), so that any deflate stream can follow it."""

    generation: int
    data: bytes
    #: CRC-32 and length of the text compressed in `data`.
    crc: int
    size: int

    @classmethod
    def of(cls, generation: int, chunks: Sequence[bytes]) -> GzipHead:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        pieces, crc, size = [GZIP_HEADER], 0, 0
        for chunk in chunks:
            pieces.append(compressor.compress(chunk))
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
        pieces.append(compressor.flush(zlib.Z_SYNC_FLUSH))
        return cls(generation, b"".join(pieces), crc, size)

    def finish(self, tail: bytes) -> list[bytes]:
        """The whole gzip member for the text `data` holds followed by `tail`, in pieces: `data`
        itself, `tail` compressed on its own (final block), the trailer (RFC 1952 CRC32, ISIZE)."""
        # A small window: the tail is a few kilobytes, and a default compressor costs ~260 KiB.
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -12, 2)
        end = compressor.compress(tail) + compressor.flush()
        crc = zlib.crc32(tail, self.crc)
        trailer = struct.pack("<II", crc, (self.size + len(tail)) & 0xFFFFFFFF)
        return [self.data, end, trailer]


def key_of(raw: Mapping[str, Any]) -> Key | None:
    """(namespace, name) of a raw object; None without a usable metadata.name."""
    metadata = raw.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    name = metadata.get("name")
    namespace = metadata.get("namespace") or ""
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        return None
    return (namespace, name)

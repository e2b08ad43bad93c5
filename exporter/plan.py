"""`plan`: the runbook's Mitigation as output you can apply; it never changes the cluster.

Contract:
- `build_plan(views, cp, migrations, ...)` is pure. It takes the outdated VMIs whose action is
  `migrate`, `restart` or `manual` (after the namespace filter) and nothing else: VMIs that
  automation is already updating (`wait`) are only counted.
- `render_plan(plan)` is a multi-document YAML stream that `kubectl create -f -` accepts: one
  `kubevirt.io/v1` VirtualMachineInstanceMigration per `migrate` VMI (`metadata.generateName`, so
  `create`, not `apply`), in batches of at most `plan.sizing.size` whose boundaries are YAML
  comments and whose documents carry the label `kubevirt-update-exporter/batch=<n>` (apply one
  batch with `kubectl create -f - -l kubevirt-update-exporter/batch=1`). `restart` VMIs appear as
  `virtctl restart` commands in comments, `manual` VMIs as comments with the reason. Everything
  that is not a manifest is a comment, so an empty plan is a comment only. Manifests are written
  by a YAML serializer and every comment line by `comment`, which escapes what could end a comment
  or upset a terminal (line breaks, control and format characters), so no value taken from an
  object (names, reasons, strategies) can end a comment or start a document. The word sequence that
  stops a VM (which sets runStrategy Halted, kubevirt/kubevirt: pkg/virt-api/rest/lifecycle.go) is
  never emitted.
- Batch size (`batch_sizing`): `--batch-size` when given (>= 1); else the cluster's
  `spec.configuration.migrations.parallelMigrationsPerCluster` (upstream default 5,
  kubevirt/kubevirt: pkg/virt-config/virt-config.go `ParallelMigrationsPerClusterDefault`) minus
  the unfinished VirtualMachineInstanceMigrations seen, and never below 1: when every slot is busy
  the plan says so and still uses batches of one. Migrations beyond the cluster limit are not
  lost: virt-controller keeps them Pending until a slot frees
  (kubevirt/kubevirt: pkg/virt-controller/watch/migration/migration.go).
- Within the plan, migrations are interleaved by source node, so a batch does not queue behind
  `parallelOutboundMigrationsPerNode` (upstream default 2, same file) of one busy node.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, Final

import yaml

from exporter.advice import (
    CLUSTER,
    EXIT_NEEDS_ACTION,
    EXIT_OK,
    Source,
    hco_or_kubevirt_cr,
    manual_reason,
    vmis,
)
from exporter.model import KINDS, RESOURCES, ControlPlane, Vmim, VmiView
from exporter.selection import EVERYTHING, Selection
from exporter.table import rfc3339

#: Upstream's default of spec.configuration.migrations.parallelMigrationsPerCluster.
DEFAULT_PARALLEL_MIGRATIONS: Final = 5
#: metadata.generateName starts with this; the server appends 5 random characters.
NAME_PREFIX: Final = "kubevirt-update-exporter-"
#: The API server truncates a generateName prefix to 58 characters (63 minus its 5-character
#: suffix, k8s.io/apiserver: pkg/storage/names/generate.go); we stay within it ourselves.
MAX_PREFIX: Final = 58
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "kubevirt-update-exporter"
BATCH_LABEL: Final = "kubevirt-update-exporter/batch"
REASON_ANNOTATION: Final = "kubevirt-update-exporter/reason"
WIDTH: Final = 100


@dataclass(frozen=True)
class BatchSizing:
    """How many migrations one batch holds, and where that number came from."""

    size: int
    #: parallelMigrationsPerCluster (or its default); None with an explicit --batch-size.
    budget: int | None
    #: Unfinished VirtualMachineInstanceMigrations seen.
    running: int

    @property
    def explicit(self) -> bool:
        """The size was given by --batch-size."""
        return self.budget is None

    @property
    def all_busy(self) -> bool:
        """Every migration slot of the cluster is taken right now."""
        return self.budget is not None and self.running >= self.budget


@dataclass(frozen=True)
class Plan:
    """What `render_plan` prints: batches of migrations, restarts, manual cases."""

    cp: ControlPlane
    sizing: BatchSizing
    batches: tuple[tuple[VmiView, ...], ...]
    restarts: tuple[VmiView, ...]
    manual: tuple[VmiView, ...]
    #: Outdated VMIs in the selection that automation is updating (action wait).
    waiting: int
    generated_at: float
    #: Where the objects came from and which kinds it lacked.
    source: Source = CLUSTER


def exit_code(plan: Plan) -> int:
    """0 when the plan is empty, 1 when it has steps for a human."""
    return EXIT_NEEDS_ACTION if plan.batches or plan.restarts or plan.manual else EXIT_OK


def running_migrations(migrations: Iterable[Vmim]) -> int:
    """Unfinished VirtualMachineInstanceMigrations (any phase but Succeeded/Failed)."""
    return sum(1 for m in migrations if not m.finished)


def batch_sizing(
    cp: ControlPlane, migrations: Iterable[Vmim], *, explicit: int | None
) -> BatchSizing:
    """The batch size of the module contract; raises ValueError for an explicit size below 1."""
    running = running_migrations(migrations)
    if explicit is not None:
        if explicit < 1:
            raise ValueError(f"--batch-size: must be at least 1, got {explicit}")
        return BatchSizing(size=explicit, budget=None, running=running)
    kv = cp.kubevirt
    configured = kv.parallel_migrations_per_cluster if kv else None
    # 0 is taken as configured: upstream then never starts a migration, and the plan says so.
    budget = DEFAULT_PARALLEL_MIGRATIONS if configured is None else max(0, configured)
    return BatchSizing(size=max(1, budget - running), budget=budget, running=running)


def build_plan(
    views: Iterable[VmiView],
    cp: ControlPlane,
    migrations: Iterable[Vmim],
    *,
    selection: Selection = EVERYTHING,
    batch_size: int | None = None,
    source: Source = CLUSTER,
    now: float,
) -> Plan:
    """The plan for the outdated VMIs that `selection` admits (see the module contract)."""
    outdated = sorted(
        (v for v in views if v.outdated and selection.admits(v)),
        key=lambda v: (v.namespace, v.name),
    )
    sizing = batch_sizing(cp, migrations, explicit=batch_size)
    to_migrate = interleave_by_node([v for v in outdated if v.action == "migrate"])
    return Plan(
        cp=cp,
        sizing=sizing,
        batches=tuple(
            tuple(to_migrate[i : i + sizing.size]) for i in range(0, len(to_migrate), sizing.size)
        ),
        restarts=tuple(v for v in outdated if v.action == "restart"),
        manual=tuple(v for v in outdated if v.action == "manual"),
        waiting=sum(1 for v in outdated if v.action == "wait"),
        generated_at=now,
        source=source,
    )


def interleave_by_node(views: Sequence[VmiView]) -> list[VmiView]:
    """Round-robin over source nodes (nodes sorted by name, VMIs keep their order per node)."""
    by_node: dict[str, list[VmiView]] = {}
    for view in views:
        by_node.setdefault(view.node, []).append(view)
    rounds = zip_longest(*(by_node[node] for node in sorted(by_node)))
    return [view for round_ in rounds for view in round_ if view is not None]


def generate_name(vmi_name: str) -> str:
    """`kubevirt-update-exporter-<vmi>-`, the VMI part shortened to keep the prefix <= 58 chars.

    A shortened part loses trailing '-' and '.' so the generated name stays a valid DNS subdomain.
    """
    room = MAX_PREFIX - len(NAME_PREFIX) - 1
    part = vmi_name if len(vmi_name) <= room else vmi_name[:room].rstrip("-.")
    return f"{NAME_PREFIX}{part}-"


def migration_manifest(view: VmiView, *, batch: int) -> dict[str, Any]:
    """The VirtualMachineInstanceMigration that moves `view` into an up-to-date launcher pod."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {
            "generateName": generate_name(view.name),
            "namespace": view.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, BATCH_LABEL: str(batch)},
            "annotations": {REASON_ANNOTATION: view.outdated_reason or "unknown"},
        },
        "spec": {"vmiName": view.name},
    }


# -- rendering ------------------------------------------------------------------------------


def render_plan(plan: Plan) -> str:
    """The YAML stream of the module contract."""
    out = _header(plan)
    total = len(plan.batches)
    for number, batch in enumerate(plan.batches, start=1):
        out.append("")
        out.extend(comment(f"---- batch {number} of {total}: {_migrations(len(batch))} ----"))
        for view in batch:
            out.append("---")
            out.append(_manifest_yaml(view, batch=number).rstrip("\n"))
    out.extend(_restart_lines(plan.restarts))
    out.extend(_manual_lines(plan.manual, plan.cp))
    return "\n".join(out) + "\n"


def _manifest_yaml(view: VmiView, *, batch: int) -> str:
    return yaml.safe_dump(migration_manifest(view, batch=batch), sort_keys=False)


def _header(plan: Plan) -> list[str]:
    migrations = sum(len(b) for b in plan.batches)
    lines = [
        f"kubevirt-update-exporter plan, {rfc3339(plan.generated_at)}. It changed nothing: "
        "review it, then `kubectl create -f` it.",
        *_source_warnings(plan.source),
        *_control_plane_warnings(plan.cp, plan.source),
    ]
    if migrations or plan.restarts or plan.manual:
        lines.append(
            f"Migrations: {migrations}, restarts: {len(plan.restarts)}, manual: {len(plan.manual)}."
        )
    else:
        lines.append("Nothing to do: no outdated VMI needs a human.")
    if plan.waiting:
        lines.append(f"Automation is updating {vmis(plan.waiting, 'more outdated')} (not listed).")
    if migrations:
        lines.append(_sizing_text(plan.sizing, len(plan.batches), plan.source))
        lines.append(
            f"One batch at a time: `kubectl create -f plan.yaml -l {BATCH_LABEL}=1`, wait until "
            f"`kubectl get vmim -A -l {BATCH_LABEL}=1` shows Succeeded, then the next. Creating "
            "everything at once is safe too: migrations beyond parallelMigrationsPerCluster "
            "wait as Pending."
        )
    return [line for text in lines for line in comment(text)]


def _source_warnings(source: Source) -> list[str]:
    if not source.missing:
        return []
    kinds = ", ".join(KINDS[r] for r in RESOURCES if r in source.missing)
    return [
        f"WARNING: the snapshot {source.snapshot} holds no {kinds}; what rests on them is "
        "unknown and said so below."
    ]


def _control_plane_warnings(cp: ControlPlane, source: Source) -> list[str]:
    if not source.policy_known:
        return [
            "WARNING: without the KubeVirt CR it is unknown whether automation updates these "
            "VMIs; the steps below assume it does not."
        ]
    if cp.crs != 1:
        return [f"WARNING: {cp.crs} KubeVirt CRs; upstream acts only with exactly one."]
    if not cp.converged:
        return [
            "WARNING: the control plane is not converged; wait for the KubeVirt update to finish, "
            "or a migration may land in a launcher pod that is still outdated."
        ]
    return []


def _migrations(count: int) -> str:
    return f"{count} migration" if count == 1 else f"{count} migrations"


def _sizing_text(sizing: BatchSizing, batches: int, source: Source = CLUSTER) -> str:
    batch_word = "batch" if batches == 1 else "batches"
    if sizing.budget is None:
        return f"{batches} {batch_word} of at most {sizing.size} (--batch-size)."
    if "virtualmachineinstancemigrations" in source.missing:
        return (
            f"{batches} {batch_word} of at most {sizing.size}: parallelMigrationsPerCluster "
            f"{sizing.budget}; migrations not finished yet are unknown (the snapshot holds no "
            "VirtualMachineInstanceMigration), so a batch may wait as Pending."
        )
    text = (
        f"{batches} {batch_word} of at most {sizing.size}: parallelMigrationsPerCluster "
        f"{sizing.budget} minus {_migrations(sizing.running)} not finished yet."
    )
    if sizing.all_busy:
        text += (
            " Every migration slot is busy now, so batches hold 1; better wait for the running "
            "migrations to finish and run plan again."
        )
    return text


def _restart_lines(restarts: Sequence[VmiView]) -> list[str]:
    if not restarts:
        return []
    lines = [
        "",
        *comment(
            f"Restart {vmis(len(restarts))} that cannot be live-migrated (the guest reboots "
            "into an up-to-date launcher pod). WARNING: a restart also applies every pending "
            "change of the VM's spec. Run by hand:"
        ),
    ]
    for view in restarts:
        reason = view.not_migratable_reason or "not live-migratable"
        command = f"virtctl restart {view.name} -n {view.namespace}    # {reason}"
        lines.extend(comment(command, wrap=False))  # one line: it is copied as a whole
    return lines


def _manual_lines(manual: Sequence[VmiView], cp: ControlPlane) -> list[str]:
    if not manual:
        return []
    lines = [
        "",
        *comment(
            f"Manual: no migration or restart updates {vmis(len(manual))}; what to do instead:"
        ),
    ]
    for view in manual:
        lines.extend(comment(f"- {view.namespace}/{view.name}: {manual_reason(view)}"))
    if cp.crs == 1 and not cp.update_methods:
        lines.extend(
            comment(f"To let automation update VMIs next time, edit {hco_or_kubevirt_cr(cp)}.")
        )
    return lines


def comment(text: str, *, width: int = WIDTH, wrap: bool = True) -> list[str]:
    """`text` as YAML comment lines (of at most `width` columns when `wrap`, else one line).

    The only way text reaches the plan outside a manifest: every whitespace character (line
    breaks included: YAML also ends a line at NEL, LS and PS) becomes a space, and every other
    character Python does not print (controls, format characters such as bidi overrides,
    surrogates, unassigned code points) is shown as its escape, `\\x1b` or `\\u202e`. What is left
    is printable on one line, for YAML and for a terminal alike.
    """
    shown = "".join(map(_shown, text))
    if not wrap:
        return ["# " + shown.strip() if shown.strip() else "#"]
    lines = textwrap.wrap(" ".join(shown.split()), width - 2, subsequent_indent="  ")
    return ["# " + line for line in lines] or ["#"]


def _shown(char: str) -> str:
    if char.isprintable():
        return char
    if char.isspace():
        return " "
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"

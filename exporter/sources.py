"""Where `report` and `plan` get their objects: a live cluster (one list per kind) or a snapshot.

Contract:
- `add_source_arguments(parser)` declares `--kubeconfig`, `--snapshot`, `--namespace`,
  `--label-selector` and `--log-level` (the serve flags of the same names);
  `source_settings(args, environ)` validates them (and their `KUBEVIRT_UPDATE_EXPORTER_*` twins)
  through `exporter.settings.parse_settings`, raising `SettingsError` with every problem, and
  resolves the kubeconfig in serve's order (`exporter.settings.resolve_kubeconfig`).
- `read_fleet` prints every problem of a run at once (the command's own, such as an unknown flag,
  with the settings'), after the command's usage, under one prefix: `kubevirt-update-exporter:
  error:`; warnings read `kubevirt-update-exporter: warning:`.
- `load(settings, progress=...)` reads the objects once (`exporter.kube.list_all`, or the
  `exporter.snapshot` loader for `--snapshot`) and returns a `Fleetview`; it raises `SourceError`
  naming the source when nothing can be read. Reading never writes to the cluster.
- `build(raws, scope=...)` turns raw objects into views through the same `exporter.fleet.Fleet` the
  server uses, so `report` and `/metrics` can never disagree. A malformed object does not stop the
  report: it is left out and its `MalformedObject` text (kind, namespace/name, field, problem) is
  returned in `Fleetview.problems`.
- Progress goes to `progress` (stderr when it is a terminal) while a cluster is read.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TextIO

from exporter import snapshot
from exporter.advice import Source
from exporter.fleet import Fleet
from exporter.kube import KubeError, list_all
from exporter.model import RESOURCES, ControlPlane, KubeVirt, Resource, Vmim, VmiView
from exporter.objects import MalformedObject, Scope, project
from exporter.selfmetrics import SelfMetrics
from exporter.settings import (
    KUBECONFIG_HELP,
    LOG_LEVELS,
    PROG,
    Settings,
    SettingsError,
    env_name,
    parse_settings,
    resolve_kubeconfig,
)

#: Exit codes of `report`/`plan` (docs/cli.md).
EXIT_USAGE: Final = 2
EXIT_SOURCE: Final = 3
#: The serve settings `report` and `plan` share (flags and their environment twins).
SOURCE_FLAGS: Final = ("kubeconfig", "snapshot", "namespace", "label-selector", "log-level")
#: Library events below this level stay off a one-shot command's stderr unless --log-level asks.
DEFAULT_LOG_LEVEL: Final = "warning"

Raws = Mapping[Resource, Sequence[Mapping[str, Any]]]


class SourceError(RuntimeError):
    """The cluster or the snapshot could not be read; the message names which and why."""


@dataclass(frozen=True)
class Fleetview:
    """Everything `report` and `plan` read: views, the control plane, CRs and migrations."""

    views: list[VmiView]
    control_plane: ControlPlane
    kubevirts: list[KubeVirt]
    migrations: list[Vmim]
    #: One line per object left out (MalformedObject text).
    problems: list[str]
    #: The snapshot read, None for a cluster.
    snapshot: Path | None = None
    #: Kinds the source did not capture (a cluster read lists every kind or fails).
    missing_kinds: tuple[Resource, ...] = ()
    #: Objects of kinds that are not read, by kind (a snapshot's Pods, ConfigMaps, ...).
    skipped: Mapping[str, int] = field(default_factory=dict)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the source flags; values stay text until `source_settings` validates them."""
    parser.add_argument("--kubeconfig", metavar="PATH", help=KUBECONFIG_HELP)
    parser.add_argument(
        "--snapshot",
        metavar="PATH",
        help="read a saved List / multi-doc YAML / JSON / folder instead of a cluster",
    )
    parser.add_argument(
        "--namespace", metavar="NS", action="append", help="only VMIs in NS (repeatable)"
    )
    parser.add_argument("--label-selector", metavar="SEL", help="label selector for VMIs")
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="library events on stderr: debug, info, warning (default), error, critical",
    )


def source_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Settings for the source flags of `args`; raises SettingsError listing every problem."""
    argv: list[str] = []
    if args.kubeconfig is not None:
        argv += ["--kubeconfig", args.kubeconfig]
    if args.snapshot is not None:
        argv += ["--snapshot", args.snapshot]
    for namespace in args.namespace or ():
        argv += ["--namespace", namespace]
    if args.label_selector is not None:
        argv += ["--label-selector", args.label_selector]
    if args.log_level is not None:
        argv += ["--log-level", args.log_level]
    twins = {env_name(flag) for flag in SOURCE_FLAGS}
    settings = parse_settings(argv, {k: v for k, v in environ.items() if k in twins})
    if args.log_level is None and not environ.get(env_name("log-level")):
        settings = replace(settings, log_level=DEFAULT_LOG_LEVEL)
    return resolve_kubeconfig(settings, environ)


def load(settings: Settings, *, progress: TextIO | None = None) -> Fleetview:
    """Read the objects `settings` names (snapshot or cluster) and derive their views."""
    if settings.snapshot is None:
        return build(read_cluster(settings, progress=progress), scope=settings.scope())
    raws, census = read_snapshot(settings.snapshot)
    return replace(
        build(raws, scope=settings.scope()),
        snapshot=settings.snapshot,
        missing_kinds=census.missing,
        skipped=dict(census.skipped),
    )


def read_snapshot(path: Path) -> tuple[Raws, snapshot.Census]:
    """The raw objects of a snapshot and its census; SourceError when it cannot be read or
    parsed, or holds no VMI list."""
    try:
        raws, census = snapshot.read(path)
        census.require_vmis()
    except (snapshot.SnapshotError, OSError) as error:
        raise SourceError(f"snapshot {path}: {error}") from error
    return raws, census


def read_cluster(settings: Settings, *, progress: TextIO | None) -> Raws:
    """One list per kind from the API server; SourceError when the cluster cannot be read."""
    started = time.monotonic()
    report = None if progress is None else _ProgressLine(progress)
    try:
        raws = asyncio.run(list_all(settings=settings, progress=report))
    except (KubeError, OSError) as error:
        raise SourceError(f"cluster: {error}") from error
    finally:
        if report is not None:
            report.done()
    if progress is not None:
        counts = ", ".join(f"{len(raws.get(r, ()))} {r}" for r in RESOURCES)
        progress.write(f"read {counts} in {time.monotonic() - started:.1f}s\n")
        progress.flush()
    return raws


class _ProgressLine:
    """One self-overwriting line on a terminal: `reading virtualmachineinstances: 1500`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def __call__(self, resource: Resource, objects: int) -> None:
        self.stream.write(f"\rreading {resource}: {objects}\033[K")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


def build(raws: Raws, *, scope: Scope | None = None) -> Fleetview:
    """Views of `raws` through a Fleet; malformed objects are left out and reported."""
    fleet = Fleet(scope=scope or Scope(), metrics=SelfMetrics())
    problems: list[str] = []
    for resource in RESOURCES:
        wellformed = []
        # Projected once here to collect the problems for the user (the Fleet would only count
        # and log them); a one-shot command can afford projecting twice.
        for raw in raws.get(resource, ()):
            try:
                project(resource, raw)
            except MalformedObject as error:
                problems.append(str(error))
                continue
            wellformed.append(raw)
        fleet.relist_begin(resource)
        fleet.relist_page(resource, wellformed)
        fleet.relist_end(resource)
    return Fleetview(
        views=fleet.views(),
        control_plane=fleet.control_plane,
        kubevirts=list(fleet.kubevirts),
        migrations=list(fleet.migrations),
        problems=problems,
    )


def read_fleet(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str],
    stderr: TextIO,
    problems: Sequence[str] = (),
    usage: str = "",
) -> Fleetview | int:
    """The fleet for a `report`/`plan` run, or its exit code (2 usage or settings, 3 source)
    after printing the error to `stderr`: the command's own `problems` and the settings' all
    at once, after its `usage`. Malformed objects and incomplete sources are warnings."""
    try:
        settings = source_settings(args, environ)
    except SettingsError as error:
        return _usage_error(stderr, usage, [*problems, *error.problems])
    if problems:
        return _usage_error(stderr, usage, problems)
    try:
        fleet = load(settings, progress=stderr if stderr.isatty() else None)
    except SourceError as error:
        stderr.write(f"{PROG}: error: cannot read the {error}\n")
        return EXIT_SOURCE
    for problem in fleet.problems:
        stderr.write(f"{PROG}: warning: left out malformed object: {problem}\n")
    for warning in completeness_warnings(fleet, namespaces=settings.namespaces):
        stderr.write(f"{PROG}: warning: {warning}\n")
    return fleet


def command_log_level(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The level of library events on a one-shot command's stderr: --log-level (or its twin)
    when it is a level, else warning (a bad value is reported with the other problems)."""
    given = args.log_level or environ.get(env_name("log-level"), "")
    return given.strip().lower() if given.strip().lower() in LOG_LEVELS else DEFAULT_LOG_LEVEL


def unknown_arguments(args: argparse.Namespace) -> list[str]:
    """A problem per argument the command's parser did not know (`args.unknown`)."""
    return [f"{arg!r}: unknown argument" for arg in getattr(args, "unknown", ())]


def choice_problems(flag: str, values: Iterable[str], choices: Sequence[str]) -> list[str]:
    """A problem per value of `flag` that is not one of `choices`."""
    return [
        f"{flag}={value!r}: expected one of {', '.join(choices)}"
        for value in values
        if value not in choices
    ]


def _usage_error(stderr: TextIO, usage: str, problems: Sequence[str]) -> int:
    stderr.write(usage)
    stderr.write(f"{PROG}: error: {SettingsError(problems)}\n")
    return EXIT_USAGE


def source_of(fleet: Fleetview) -> Source:
    """What `report` and `plan` say about where `fleet` came from and what it lacked."""
    return Source(
        snapshot=None if fleet.snapshot is None else str(fleet.snapshot),
        missing=frozenset(fleet.missing_kinds),
        skipped=fleet.skipped,
    )


def completeness_warnings(fleet: Fleetview, *, namespaces: Sequence[str] = ()) -> list[str]:
    """What the source lacks that the output rests on: kinds a snapshot did not capture, objects
    it skipped, and namespaces asked for that hold no VMI (a typo looks exactly like that)."""
    where = f"snapshot {fleet.snapshot}" if fleet.snapshot is not None else "the cluster"
    warnings = [
        f"{where} holds no {snapshot.KIND_NAMES[r]} (not captured, or there is none): unknown: "
        f"{snapshot.MISSING_KIND_EFFECTS[r]}"
        for r in fleet.missing_kinds
    ]
    if fleet.skipped:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(fleet.skipped.items()))
        total = sum(fleet.skipped.values())
        warnings.append(f"{where}: skipped {total} objects of kinds that are not read ({kinds})")
    with_vmis = {view.namespace for view in fleet.views}
    warnings.extend(
        f"namespace {namespace} holds no VMI in {where} (or does not exist)"
        for namespace in namespaces
        if namespace not in with_vmis
    )
    return warnings

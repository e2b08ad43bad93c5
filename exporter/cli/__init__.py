"""The `kubevirt-update-exporter` command (also `python -m exporter`).

Contract:
- `main(argv=None) -> int` is the process's exit code. Subcommands: `serve` (the default when the
  first argument is not a subcommand, so `kubevirt-update-exporter --snapshot x` serves), `report`
  and `plan` (declared and run by `exporter.cli.report` / `exporter.cli.plan`).
- `serve` validates every flag and environment twin first; if anything is wrong it prints every
  problem to stderr and returns 2 before logging is set up or anything is started. It then
  returns 0 after SIGTERM/SIGINT and 1 when it had to stop (a root task ended, the address could
  not be bound).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import structlog

from exporter import __version__
from exporter.settings import (
    PROG,
    SERVE_DESCRIPTION,
    CommandParser,
    Settings,
    SettingsError,
    add_serve_arguments,
    parse_settings,
    resolve_kubeconfig,
    serve_parser,
)

if TYPE_CHECKING:  # the serving stack is imported only when serving: report/plan start faster
    from exporter.fleet import Fleet
    from exporter.selfmetrics import SelfMetrics
    from exporter.web import RootTask

SUBCOMMANDS: Final = ("serve", "report", "plan")
EXIT_USAGE: Final = 2

log = structlog.get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: the process's arguments); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0
    if args and args[0] == "--version":
        return print_version()
    if not args or args[0] not in SUBCOMMANDS:
        return serve_command(args)
    if args[0] == "serve":
        return serve_command(args[1:])
    return _run_subcommand(args)


def print_version() -> int:
    """`--version`, before or after a subcommand."""
    print(f"{PROG} {__version__}")
    return 0


def serve_command(argv: Sequence[str]) -> int:
    """`serve`: validate the settings (exit 2 listing every problem), then serve until stopped."""
    if "-h" in argv or "--help" in argv:
        serve_parser(f"{PROG} [serve]").print_help()
        return 0
    if "--version" in argv:
        return print_version()
    try:
        settings = resolve_kubeconfig(parse_settings(argv, os.environ), os.environ)
    except SettingsError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    from exporter.log import configure_logging

    configure_logging(log_format=settings.log_format, level=settings.log_level)
    return asyncio.run(serve(settings))


async def serve(settings: Settings) -> int:
    """Build the fleet, feed it (cluster watchers or the snapshot) and serve it over HTTP."""
    from exporter import allocator, web
    from exporter.fleet import Fleet
    from exporter.metrics import MetricFilter
    from exporter.selfmetrics import SelfMetrics

    metrics = SelfMetrics()
    allow = MetricFilter.parse(
        ",".join(settings.metric_allowlist), ",".join(settings.metric_denylist)
    )
    # What is alive once the first lists are settled (modules, the records and rendered lines)
    # mostly lives on: freezing it spares every later full collection from scanning it again,
    # a stall of its own at 10^5 VMIs. Records hold no cycles, so deleted ones are still freed.
    gc.freeze()
    tuned = allocator.tune()
    fleet = Fleet(
        scope=settings.scope(),
        metrics=metrics,
        allow=allow,
        on_first_sync=_after_first_sync,
        # A snapshot never changes once loaded: its text is worth keeping only for identity
        # scrapes (watched fleets keep it, so that a change rebuilds only what it touched).
        text_for_identity_only=settings.snapshot is not None,
        # Building it allocates as much again in pieces, freed once joined: give them back.
        on_text_built=allocator.trim,
    )
    log.info(
        "serve.starting",
        version=__version__,
        source=f"snapshot {settings.snapshot}" if settings.snapshot else "cluster",
        namespaces=list(settings.namespaces) or "all",
        label_selector=settings.label_selector,
        shard=f"{settings.shard}/{settings.total_shards}",
        allocator_tuned=tuned,
    )
    return await web.serve(
        settings=settings,
        exposition=fleet,
        lag_sink=metrics,
        root_tasks=dict([_feed(settings, fleet, metrics), ("settler", fleet.run_settler)]),
    )


def _after_first_sync() -> None:
    """Once the first lists are settled: freeze what lives on, give back what loading freed."""
    from exporter import allocator

    # Collect first: a garbage cycle alive now would be frozen with the rest and never freed.
    gc.collect()
    gc.freeze()
    # Decoding the lists freed far more than the fleet keeps; without a trim glibc holds the
    # freed heap pages (docs/benchmarks.md: about 70 B per VMI at 100,000 VMIs).
    allocator.trim()


def _feed(settings: Settings, fleet: Fleet, metrics: SelfMetrics) -> tuple[str, RootTask]:
    """The root task that fills the fleet: the snapshot loader, or the cluster watchers."""
    snapshot = settings.snapshot
    if snapshot is not None:
        from exporter.snapshot import run_snapshot

        return "snapshot", lambda: run_snapshot(path=snapshot, fleet=fleet)
    from exporter import kube

    return "watchers", lambda: kube.run_watchers(settings=settings, fleet=fleet, metrics=metrics)


def _run_subcommand(argv: Sequence[str]) -> int:
    """Parse with the subcommand's own parser (so its usage is the one shown); flags it does not
    know are problems listed with the others, not a stop at the first."""
    top = _top_parser()
    command = top.subcommand_parsers[argv[0]]
    args, unknown = command.parse_known_args(argv[1:])
    args.unknown = unknown
    args.usage = command.format_usage()
    return _subcommand_runners()[argv[0]](args)


def _subcommand_runners() -> dict[str, Callable[[argparse.Namespace], int]]:
    from exporter.cli import plan, report

    return {"report": report.run, "plan": plan.run}


def _top_parser() -> CommandParser:
    from exporter.cli import plan, report

    parser = CommandParser(
        prog=PROG,
        description="Which KubeVirt VMIs run in outdated virt-launcher pods, why, and what will "
        "(or should) update them. Without a subcommand, serve.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="{serve,report,plan}")
    serve_command_parser = subparsers.add_parser(
        "serve",
        help="watch the cluster (or a snapshot) and serve /metrics (default)",
        description=SERVE_DESCRIPTION,
    )
    add_serve_arguments(serve_command_parser)
    report.register(subparsers)
    plan.register(subparsers)
    parser.subcommand_parsers = dict(subparsers.choices)
    for command in parser.subcommand_parsers.values():
        command.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser

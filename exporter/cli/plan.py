"""The `plan` subcommand: its flags, and a run from the source to a YAML stream on stdout.

Contract: `register(subparsers)` declares `plan` and its flags (`--batch-size` must be an integer
>= 1); `run(args, ...)` reads the fleet (`exporter.sources`), builds the pure `exporter.plan` and
writes it. Exit codes (docs/cli.md): 0 nothing to do, 1 the plan has steps, 2 usage or settings
error, 3 cluster or snapshot unreadable.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO

from exporter import plan
from exporter.log import configure_command_logging
from exporter.selection import Selection
from exporter.settings import CommandParser
from exporter.sources import (
    add_source_arguments,
    command_log_level,
    read_fleet,
    source_of,
    unknown_arguments,
)


def _batch_size_problems(text: str | None) -> list[str]:
    if text is None or (text.strip().isdigit() and int(text) >= 1):
        return []
    return [f"--batch-size={text!r}: expected an integer >= 1"]


def register(subparsers: argparse._SubParsersAction[CommandParser]) -> None:
    """Add the `plan` subcommand (its flags; `run` executes it)."""
    parser = subparsers.add_parser(
        "plan",
        help="print what to apply: migrations (YAML) and restart/manual steps (comments)",
        description="The OutdatedVirtualMachineInstanceWorkloads runbook's Mitigation as output "
        "you can apply: `kubevirt-update-exporter plan | kubectl create -f -`. Never changes the "
        "cluster. Exit code: 0 nothing to do, 1 the plan has steps, 2 usage or settings error, "
        "3 cluster/snapshot unreadable.",
    )
    parser.add_argument(
        "--batch-size",
        metavar="N",
        help="migrations per batch (default: parallelMigrationsPerCluster, else 5, minus "
        "migrations not finished yet; at least 1)",
    )
    add_source_arguments(parser)
    parser.set_defaults(run=run)


def run(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    now: float | None = None,
) -> int:
    """Execute `plan` for parsed `args`: 0 when the plan is empty, 1 when it has steps."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    environ = os.environ if environ is None else environ
    configure_command_logging(err, level=command_log_level(args, environ))
    fleet = read_fleet(
        args,
        environ=environ,
        stderr=err,
        problems=[*unknown_arguments(args), *_batch_size_problems(args.batch_size)],
        usage=getattr(args, "usage", ""),
    )
    if isinstance(fleet, int):
        return fleet
    built = plan.build_plan(
        fleet.views,
        fleet.control_plane,
        fleet.migrations,
        selection=Selection(namespaces=frozenset(args.namespace or ())),
        source=source_of(fleet),
        batch_size=None if args.batch_size is None else int(args.batch_size),
        now=time.time() if now is None else now,
    )
    out.write(plan.render_plan(built))
    return plan.exit_code(built)

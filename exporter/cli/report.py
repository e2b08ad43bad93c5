"""The `report` subcommand: its flags, and a run from the source to stdout and an exit code.

Contract: `register(subparsers)` declares `report` and its flags; `run(args, ...)` reads the fleet
(`exporter.sources`), builds the pure `exporter.report` document and writes it as a table, JSON or
YAML. Exit codes (docs/cli.md): 0 nothing needs a human, 1 some VMI does, 2 usage or settings
error, 3 cluster or snapshot unreadable.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO

from exporter import report
from exporter.log import configure_command_logging
from exporter.model import ACTIONS, METHODS
from exporter.selection import Selection
from exporter.settings import CommandParser
from exporter.sources import (
    add_source_arguments,
    choice_problems,
    command_log_level,
    read_fleet,
    source_of,
    unknown_arguments,
)


def register(subparsers: argparse._SubParsersAction[CommandParser]) -> None:
    """Add the `report` subcommand (its flags; `run` executes it)."""
    parser = subparsers.add_parser(
        "report",
        help="list outdated VMIs: why, what automation will do, what you should do",
        description="The OutdatedVirtualMachineInstanceWorkloads runbook's Diagnosis in one "
        "command. Exit code: 0 nothing needs a human, 1 some VMI needs action "
        "(migrate/restart/manual), 2 usage or settings error, 3 cluster/snapshot unreadable.",
    )
    # Choices are checked by `run`, so that every bad value is reported at once.
    parser.add_argument(
        "-o",
        "--output",
        metavar="{table,wide,json,yaml}",
        default="table",
        help="default: table, as wide as the terminal; wide adds each row's why",
    )
    parser.add_argument(
        "--preflight",
        action="store_true",
        help="every Running VMI: what automation would do if the control plane were upgraded now",
    )
    parser.add_argument(
        "--action",
        metavar="{" + ",".join(ACTIONS) + "}",
        action="append",
        help="only rows with this action (repeatable)",
    )
    parser.add_argument(
        "--method",
        metavar="{" + ",".join(METHODS) + "}",
        action="append",
        help="only rows with this method (repeatable)",
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
    """Execute `report` for parsed `args`; returns the documented exit code."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    environ = os.environ if environ is None else environ
    configure_command_logging(err, level=command_log_level(args, environ))
    problems = [
        *unknown_arguments(args),
        *choice_problems("-o/--output", [args.output], report.OUTPUTS),
        *choice_problems("--action", args.action or (), ACTIONS),
        *choice_problems("--method", args.method or (), METHODS),
    ]
    fleet = read_fleet(
        args,
        environ=environ,
        stderr=err,
        problems=problems,
        usage=getattr(args, "usage", ""),
    )
    if isinstance(fleet, int):
        return fleet
    moment = time.time() if now is None else now
    doc = report.build_report(
        fleet.views,
        fleet.control_plane,
        kubevirts=fleet.kubevirts,
        selection=Selection(
            namespaces=frozenset(args.namespace or ()),
            actions=frozenset(args.action or ()),
            methods=frozenset(args.method or ()),
        ),
        preflight=args.preflight,
        source=source_of(fleet),
        now=moment,
    )
    if args.output == "json":
        out.write(report.render_json(doc))
    elif args.output == "yaml":
        out.write(report.render_yaml(doc))
    else:
        wide = args.output == "wide"
        width = None if wide else table_width(environ, out)
        out.write(report.render_table(doc, now=moment, width=width, wide=wide))
    return report.exit_code(doc)


def table_width(environ: Mapping[str, str], out: TextIO) -> int | None:
    """The width the table must fit: $COLUMNS, else the terminal's; None (no limit) when the
    output goes to a file or a pipe, where nothing is gained by leaving columns out."""
    columns = environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(out.fileno()).columns if out.isatty() else None
    except (OSError, ValueError, io.UnsupportedOperation):
        return None

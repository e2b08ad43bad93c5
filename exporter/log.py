"""Logging: structured events with key-values, one line each, on stderr.

Contract:
- `configure_logging(log_format=..., level=...)` routes structlog AND the standard library's loggers
  (aiohttp, asyncio, kubernetes_asyncio) through one renderer, so every line of the process has
  the same shape: JSON objects when `log_format` is "json", aligned human text when "console".
  With `log_format=None` the choice follows the stream: JSON when stderr is not a terminal (a pod,
  where a pipeline parses lines), console on a terminal.
- Events below `level` are dropped before any formatting work.
- `configure_command_logging(stderr)` is the setting of the one-shot commands (`report`, `plan`):
  warnings and worse only, on the process's stderr, never on stdout.
- Only the command line (`exporter.cli`) configures logging; library modules only log.
- Each line carries `timestamp` (UTC, ISO 8601), `level`, `event`, the logger name when the
  standard library produced it, and the event's key-values; exceptions are rendered in the line.
- Logging never raises: a line that cannot be written (stderr closed, or a pipe whose reader is
  gone, as with `| head`) is dropped, so a lost log reader can never keep the process from
  stopping or change its exit code.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Final, TextIO, cast

import structlog
from structlog.typing import Processor

LEVELS: Final[dict[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def wants_json(log_format: str | None, stream: TextIO) -> bool:
    """JSON unless asked for console, or unless nothing was asked and `stream` is a terminal."""
    if log_format is not None:
        return log_format == "json"
    isatty = getattr(stream, "isatty", None)
    return not (isatty is not None and isatty())


class _Unfailing:
    """A text stream whose writes and flushes never raise (see the module contract)."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text) if self._stream is not None else len(text)
        except (OSError, ValueError):  # EPIPE, EBADF, or "I/O operation on closed file"
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if self._stream is not None:
                self._stream.flush()

    def isatty(self) -> bool:
        try:
            return self._stream is not None and self._stream.isatty()
        except (OSError, ValueError):
            return False


def configure_logging(
    *, log_format: str | None, level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library's root logger (see module contract)."""
    stream = cast(TextIO, _Unfailing(sys.stderr if stream is None else stream))
    numeric_level = LEVELS[level.lower()]
    as_json = wants_json(log_format, stream)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if as_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        # No caching: the exporter logs per relist and per problem, never per event, so the cost
        # is nil, and a cached logger would ignore any later reconfiguration (tests, report/plan).
        cache_logger_on_first_use=False,
    )
    _route_standard_logging(shared, renderer, numeric_level, stream)


def _route_standard_logging(
    shared: list[Processor], renderer: Processor, level: int, stream: TextIO
) -> None:
    """Render the standard library's records (aiohttp, asyncio, ...) like structlog's events."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's own access logger is replaced by exporter.web's; keep the stdlib one quiet.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def configure_command_logging(stderr: TextIO, *, level: str = "warning") -> None:
    """Logging for a one-shot command whose stdout carries its output (see module contract)."""
    # Library events (relists, retries) must never reach stdout, which carries the report or the
    # plan; by default only warnings are worth a one-shot command's stderr (--log-level says
    # otherwise). The process's own stderr, not a replaced sys.stderr: loggers keep the stream
    # they were first used with.
    configure_logging(log_format=None, level=level, stream=sys.__stderr__ or stderr)

"""The `serve` settings: one frozen value, built once from flags and environment.

Contract:
- `parse_settings(argv, environ)` returns `Settings` or raises `SettingsError` listing EVERY problem
  found, each naming the flag (or the environment variable it came from) and the bad value.
- Every flag `--some-flag` has an environment twin `KUBEVIRT_UPDATE_EXPORTER_SOME_FLAG`; a flag
  given on the command line wins over its twin; an empty environment value counts as unset
  (templated manifests often render empty strings). List-valued twins are comma-separated.
- Validation reads the files the flags name (readable, non-empty token, loadable TLS pair) but
  changes nothing and talks to no server.
- `resolve_kubeconfig(settings, environ)` picks the cluster's credentials in one documented order
  (docs/cli.md): `--kubeconfig` (or its twin), `$KUBECONFIG`, `~/.kube/config`, the in-cluster
  ServiceAccount. A file named that does not exist is the same problem however it was named; no
  credentials at all is a problem naming every place looked at.
- `WatchTiming` is the timing of lists and watches (page sizes, timeouts, backoff): not flags,
  production defaults that tests shrink.

The module is longer than most because every default carries its reason as an attribute
docstring; the parsing is one small function per flag.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal, NoReturn

from exporter.objects import Scope
from exporter.selectors import LabelSelector

#: The command's name: the console script, and the prefix of every error and warning it prints.
PROG: Final = "kubevirt-update-exporter"
ENV_PREFIX: Final = "KUBEVIRT_UPDATE_EXPORTER_"

LogFormat = Literal["json", "console"]
LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("json", "console")
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")

_DNS1123_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_HOSTNAME: Final = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*"
)


@dataclass(frozen=True)
class Settings:
    """Everything `serve` needs to know, validated. Defaults are an unconfigured run's values."""

    listen_host: str = "0.0.0.0"
    """
    Address to serve HTTP on. Every IPv4 interface by default, because the exporter runs in a pod
    whose IP is what Prometheus scrapes; "::" (from `[::]:PORT`) serves IPv6 and, on dual-stack
    hosts, IPv4 too. "" (from `:PORT`) means every interface of every family.
    """

    listen_port: int = 8080
    """
    TCP port. 8080 is the conventional unprivileged metrics port (kube-state-metrics uses it too),
    so the container needs no capability to bind it.
    """

    kubeconfig: Path | None = None
    """
    Kubeconfig file to reach the API server (after `resolve_kubeconfig`: the file chosen, several
    joined by os.pathsep as `$KUBECONFIG` lists them). None means the in-cluster ServiceAccount,
    the normal Deployment case.
    """

    snapshot: Path | None = None
    """
    Serve a saved fleet (a `kubectl get -o yaml|json` List, multi-document YAML, or a folder of such
    files) instead of watching a cluster. None means watch the cluster. Useful to look at a
    customer's fleet offline, and for demos and tests.
    """

    namespaces: tuple[str, ...] = ()
    """
    Namespaces whose VMIs, VMs and VMIMs are watched. Empty means all namespaces, which needs
    cluster-wide list/watch; a list lets the chart grant per-namespace Roles instead.
    The KubeVirt CR is always read cluster-wide.
    """

    label_selector: str | None = None
    """
    Label selector applied to VMIs only (VMs and VMIMs do not carry the VMI's labels and the joins
    need them all). None selects every VMI. Kept as text, as the API server takes it.
    """

    metric_allowlist: tuple[str, ...] = ()
    """
    Regexes of metric names to expose (kube-state-metrics semantics); empty means all. Lets large
    fleets drop per-VMI families; the aggregates stay available.
    """

    metric_denylist: tuple[str, ...] = ()
    """Regexes of metric names to drop; empty drops nothing. Excludes the allowlist."""

    tls_cert_file: Path | None = None
    """
    PEM certificate (chain) to serve HTTPS with; set together with `tls_key_file`. None serves plain
    HTTP, the common case behind a ServiceMonitor on the pod network.
    """

    tls_key_file: Path | None = None
    """PEM private key of `tls_cert_file`."""

    bearer_token_file: Path | None = None
    """
    File holding a static token that `/metrics` requires as `Authorization: Bearer <token>`.
    Read once at start; no TokenReview call is made, so serving never depends on the API server.
    None leaves `/metrics` open (network policy is the usual guard). `/healthz` and `/readyz` stay
    open either way: the kubelet probes them without credentials.
    """

    shard: int = 0
    """This replica's shard, 0 <= shard < total_shards (VMIs are split by UID hash)."""

    total_shards: int = 1
    """
    Number of replicas splitting the VMIs. 1 (no sharding) fits one replica up to the 100,000
    VMIs the budgets of docs/benchmarks.md are measured at; beyond that, shards keep each
    replica's memory and scrape time bounded.
    """

    log_format: LogFormat | None = None
    """
    `json` or `console`. None picks by where logs go: JSON when stderr is not a terminal (a pod,
    where a log pipeline parses lines), console when a human is watching a terminal.
    """

    log_level: str = "info"
    """
    Lowest level logged. `info` shows one line per relist and every problem; `debug` adds one line
    per HTTP request and per ignored snapshot object.
    """

    def scope(self) -> Scope:
        """The object filter these settings describe (namespaces, VMI label selector, shard)."""
        selector = None if self.label_selector is None else LabelSelector.parse(self.label_selector)
        return Scope(
            namespaces=frozenset(self.namespaces),
            label_selector=selector,
            shard=self.shard,
            total_shards=self.total_shards,
        )


#: An unconfigured run's settings (what a bad value falls back to while validation goes on).
DEFAULTS: Final = Settings()


class SettingsError(ValueError):
    """Invalid settings. `problems` lists every one, each naming its flag or variable and value."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(
            "invalid settings:\n" + "\n".join(f"  - {problem}" for problem in self.problems)
        )


def env_name(flag: str) -> str:
    """The environment twin of a flag: `--log-level` -> `KUBEVIRT_UPDATE_EXPORTER_LOG_LEVEL`."""
    return ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()


class CommandParser(argparse.ArgumentParser):
    """argparse with the command's one error prefix (`kubevirt-update-exporter: error:`)."""

    subcommand_parsers: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: error: {message}\n")  # 2: a usage error, as argparse exits


class _CollectingParser(argparse.ArgumentParser):
    """An argparse parser that raises instead of printing and exiting (parse_settings is pure)."""

    def error(self, message: str) -> NoReturn:
        raise SettingsError([message])


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the serve flags on `parser`. Values stay text: parse_settings validates them."""
    flag = parser.add_argument
    flag("--listen", metavar="HOST:PORT", help="address to serve on (default 0.0.0.0:8080)")
    flag("--kubeconfig", metavar="PATH", help=KUBECONFIG_HELP)
    flag("--snapshot", metavar="PATH", help="serve a saved List / multi-doc YAML / JSON / folder")
    flag("--namespace", metavar="NS", action="append", help="watch only NS (repeatable)")
    flag("--label-selector", metavar="SEL", help="label selector for VMIs")
    flag(
        "--metric-allowlist", metavar="REGEXES", help="comma-separated metric name regexes to keep"
    )
    flag("--metric-denylist", metavar="REGEXES", help="comma-separated metric name regexes to drop")
    flag("--tls-cert-file", metavar="PATH", help="PEM certificate for HTTPS (with --tls-key-file)")
    flag("--tls-key-file", metavar="PATH", help="PEM private key for HTTPS (with --tls-cert-file)")
    flag("--bearer-token-file", metavar="PATH", help="static bearer token required on /metrics")
    flag("--shard", metavar="N", help="this replica's shard, 0 <= N < M (default 0)")
    flag("--total-shards", metavar="M", help="number of shards (default 1)")
    flag("--log-format", metavar="json|console", help="default: json unless stderr is a terminal")
    flag("--log-level", metavar="LEVEL", help="debug, info (default), warning, error, critical")


KUBECONFIG_HELP: Final = (
    "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the in-cluster "
    "ServiceAccount)"
)

SERVE_DESCRIPTION: Final = (
    "Watch the cluster (or serve a snapshot) and export per-VMI update metrics on /metrics. "
    f"Every flag has an environment twin {ENV_PREFIX}<FLAG>; the flag wins."
)


def serve_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """A standalone parser for the serve flags (for `--help`; parse_settings builds its own)."""
    parser = argparse.ArgumentParser(prog=prog, description=SERVE_DESCRIPTION)
    add_serve_arguments(parser)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


@dataclass(frozen=True, slots=True)
class _Raw:
    """One setting as given: its value and where it came from (`--flag` or the variable name)."""

    value: str
    source: str


class _Reader:
    """Looks up each setting in flags then environment, and collects problems as it validates."""

    def __init__(self, flags: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.flags = flags
        self.environ = environ
        self.problems: list[str] = []

    def raw(self, flag: str) -> _Raw | None:
        """The flag's value if given, else its environment twin's if non-empty, else None."""
        value = getattr(self.flags, flag.removeprefix("--").replace("-", "_"))
        if value is not None:
            return _Raw(value, flag)
        env_value = self.environ.get(env_name(flag), "")
        return _Raw(env_value, env_name(flag)) if env_value else None

    def problem(self, raw: _Raw, what: str) -> None:
        self.problems.append(f"{raw.source}={raw.value!r}: {what}")

    def list_(self, flag: str) -> tuple[list[str], str] | None:
        """A repeatable / comma-separated setting: its non-empty items and their source."""
        value = getattr(self.flags, flag.removeprefix("--").replace("-", "_"))
        if value is not None:
            texts = [value] if isinstance(value, str) else value
            items = [item for text in texts for item in text.split(",")]
            return [item.strip() for item in items if item.strip()], flag
        env_value = self.environ.get(env_name(flag), "")
        if not env_value:
            return None
        items = [item.strip() for item in env_value.split(",") if item.strip()]
        return items, env_name(flag)


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from the serve flags `argv` and `environ`; SettingsError lists every problem."""
    parser = _CollectingParser(add_help=False, allow_abbrev=False)
    add_serve_arguments(parser)
    flags, unknown = parser.parse_known_args(list(argv))
    reader = _Reader(flags, environ)
    reader.problems.extend(f"{arg!r}: unknown argument" for arg in unknown)
    # Evaluated in the order the flags are documented, so the problems read in that order.
    host, port = _listen(reader)
    kubeconfig = _readable_path(reader, "--kubeconfig", want_file=True)
    snapshot = _readable_path(reader, "--snapshot", want_file=False)
    namespaces = _namespaces(reader)
    label_selector = _label_selector(reader)
    allowlist, denylist = _metric_lists(reader)
    tls_cert, tls_key = _tls(reader)
    bearer_token_file = _bearer_token_file(reader)
    shard, total_shards = _shards(reader)
    settings = Settings(
        listen_host=host,
        listen_port=port,
        kubeconfig=kubeconfig,
        snapshot=snapshot,
        namespaces=namespaces,
        label_selector=label_selector,
        metric_allowlist=allowlist,
        metric_denylist=denylist,
        tls_cert_file=tls_cert,
        tls_key_file=tls_key,
        bearer_token_file=bearer_token_file,
        shard=shard,
        total_shards=total_shards,
        log_format=_log_format(reader),
        log_level=_log_level(reader),
    )
    if settings.snapshot is not None and settings.kubeconfig is not None:
        reader.problems.append(
            "--snapshot and --kubeconfig exclude each other: a snapshot is served without a cluster"
        )
    if reader.problems:
        raise SettingsError(reader.problems)
    return settings


def resolve_kubeconfig(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """`settings` with the kubeconfig chosen in the module contract's order (None: in-cluster);
    SettingsError when the file named does not exist or there are no credentials at all."""
    if settings.snapshot is not None or settings.kubeconfig is not None:
        return settings
    named = environ.get("KUBECONFIG", "")
    if named:
        existing = [f for f in named.split(os.pathsep) if f and Path(f).is_file()]
        if not existing:
            raise SettingsError([f"KUBECONFIG={named!r}: no such file or directory"])
        return replace(settings, kubeconfig=Path(os.pathsep.join(existing)))
    default = Path(environ.get("HOME") or Path.home(), ".kube", "config")
    if default.is_file():
        return replace(settings, kubeconfig=default)
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return settings
    raise SettingsError(
        [
            f"no cluster credentials: --kubeconfig not given, KUBECONFIG not set, {default}: no "
            "such file or directory, and not in a pod (KUBERNETES_SERVICE_HOST not set); give "
            "--kubeconfig PATH, or --snapshot PATH to read a saved fleet"
        ]
    )


def _listen(reader: _Reader) -> tuple[str, int]:
    raw = reader.raw("--listen")
    if raw is None:
        return DEFAULTS.listen_host, DEFAULTS.listen_port
    host, sep, port_text = raw.value.rpartition(":")
    if not sep:
        reader.problem(raw, "expected HOST:PORT, e.g. 0.0.0.0:8080 or [::]:8080")
        return DEFAULTS.listen_host, DEFAULTS.listen_port
    host_problem = _host_problem(host)
    if host_problem:
        reader.problem(raw, host_problem)
    port = _port(port_text)
    if port is None:
        reader.problem(raw, f"port {port_text!r} is not a number between 1 and 65535")
    if host.startswith("["):
        host = host[1:-1]
    return host, port or DEFAULTS.listen_port


def _host_problem(host: str) -> str | None:
    """Why `host` (as written before the last colon) is not a listen address, or None."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{host!r} is not an IPv6 address"
        return None
    if ":" in host:
        return f"IPv6 address {host!r} must be written in brackets, e.g. [::]:8080"
    if host == "" or _HOSTNAME.fullmatch(host):
        return None
    return f"{host!r} is not an IP address or host name"


def _port(text: str) -> int | None:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        return None
    return int(text)


def _readable_path(reader: _Reader, flag: str, *, want_file: bool) -> Path | None:
    """The path of `flag` if it names something readable (a file, or a file or folder)."""
    raw = reader.raw(flag)
    if raw is None:
        return None
    path = Path(raw.value)
    problem = _unreadable(path, want_file=want_file)
    if problem:
        reader.problem(raw, problem)
    return path


def _unreadable(path: Path, *, want_file: bool) -> str | None:
    if not path.exists():
        return "no such file or directory"
    if want_file and not path.is_file():
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None


def _namespaces(reader: _Reader) -> tuple[str, ...]:
    found = reader.list_("--namespace")
    if found is None:
        return ()
    names, source = found
    for name in names:
        if len(name) > 63 or not _DNS1123_LABEL.fullmatch(name):
            reader.problem(_Raw(name, source), "not a namespace name (a DNS-1123 label)")
    return tuple(dict.fromkeys(names))


def _label_selector(reader: _Reader) -> str | None:
    raw = reader.raw("--label-selector")
    if raw is None:
        return None
    try:
        LabelSelector.parse(raw.value)
    except ValueError as error:
        reader.problem(raw, str(error))
    return raw.value


def _metric_lists(reader: _Reader) -> tuple[tuple[str, ...], tuple[str, ...]]:
    allow = _regexes(reader, "--metric-allowlist")
    deny = _regexes(reader, "--metric-denylist")
    if allow and deny:
        reader.problems.append("--metric-allowlist and --metric-denylist exclude each other")
    return allow, deny


def _regexes(reader: _Reader, flag: str) -> tuple[str, ...]:
    found = reader.list_(flag)
    if found is None:
        return ()
    patterns, source = found
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            reader.problem(_Raw(pattern, source), f"not a regular expression: {error}")
    return tuple(patterns)


def _tls(reader: _Reader) -> tuple[Path | None, Path | None]:
    cert_raw, key_raw = reader.raw("--tls-cert-file"), reader.raw("--tls-key-file")
    if (cert_raw is None) != (key_raw is None):
        reader.problems.append("--tls-cert-file and --tls-key-file must be given together")
    cert = _readable_path(reader, "--tls-cert-file", want_file=True)
    key = _readable_path(reader, "--tls-key-file", want_file=True)
    if cert_raw and key_raw and cert and key and not _unreadable(cert, want_file=True):
        problem = None if _unreadable(key, want_file=True) else _tls_pair_problem(cert, key)
        if problem:
            reader.problems.append(
                f"--tls-cert-file={str(cert)!r} / --tls-key-file={str(key)!r}: {problem}"
            )
    return cert, key


def _tls_pair_problem(cert: Path, key: Path) -> str | None:
    """Why the PEM pair cannot serve TLS (unparsable, or key and certificate do not match)."""
    try:
        tls_server_context(cert, key)
    except (ssl.SSLError, OSError) as error:
        return f"cannot load the certificate and key: {error}"
    return None


def tls_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later) presenting `cert` with `key`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def _bearer_token_file(reader: _Reader) -> Path | None:
    path = _readable_path(reader, "--bearer-token-file", want_file=True)
    raw = reader.raw("--bearer-token-file")
    if path is None or raw is None or _unreadable(path, want_file=True):
        return path
    try:
        token = read_bearer_token(path)
    except (OSError, UnicodeDecodeError) as error:
        reader.problem(raw, f"cannot read the token: {error}")
        return path
    if not token:
        reader.problem(raw, "the token file is empty")
    return path


def read_bearer_token(path: Path) -> str:
    """The token in `path`, without surrounding whitespace (Secrets often end with a newline)."""
    return path.read_text(encoding="utf-8").strip()


def _shards(reader: _Reader) -> tuple[int, int]:
    shard = _integer(reader, "--shard", DEFAULTS.shard, minimum=0)
    total = _integer(reader, "--total-shards", DEFAULTS.total_shards, minimum=1)
    if shard is not None and total is not None and shard >= total:
        reader.problems.append(
            f"--shard={shard} / --total-shards={total}: the shard must be below the total "
            "(shards are numbered from 0)"
        )
    return shard or 0, total or 1


def _integer(reader: _Reader, flag: str, default: int, *, minimum: int) -> int | None:
    """The flag's integer value (default when unset), or None after recording a problem."""
    raw = reader.raw(flag)
    if raw is None:
        return default
    text = raw.value.strip()
    if not text.isdigit() or int(text) < minimum:
        reader.problem(raw, f"expected an integer >= {minimum}")
        return None
    return int(text)


def _log_format(reader: _Reader) -> LogFormat | None:
    raw = reader.raw("--log-format")
    if raw is None:
        return None
    for log_format in LOG_FORMATS:
        if raw.value.strip().lower() == log_format:
            return log_format
    reader.problem(raw, f"expected one of {', '.join(LOG_FORMATS)}")
    return None


def _log_level(reader: _Reader) -> str:
    raw = reader.raw("--log-level")
    if raw is None:
        return DEFAULTS.log_level
    level = raw.value.strip().lower()
    if level in LOG_LEVELS:
        return level
    reader.problem(raw, f"expected one of {', '.join(LOG_LEVELS)}")
    return DEFAULTS.log_level


@dataclass(frozen=True)
class WatchTiming:
    """The timing of lists and watches; the defaults are for production, tests shrink them."""

    #: Objects per list page: client-go's pager default
    #: (kubernetes/kubernetes:staging/src/k8s.io/client-go/tools/pager/pager.go); a page of 500
    #: VMIs (5-20 KiB each) is at most ~10 MB of JSON.
    page_size: int = 500
    #: Objects handed to `relist_page` at once, with a yield to the event loop between slices.
    slice_size: int = 100
    #: Bounds of the server-side `timeoutSeconds` of a watch, drawn at random per request so that
    #: watches do not all end and reconnect together; 5-10 min as client-go's reflector
    #: (kubernetes/kubernetes:staging/src/k8s.io/client-go/tools/cache/reflector.go).
    watch_timeout_seconds: tuple[int, int] = (300, 600)
    #: A watch silent this long (no event, no bookmark) is considered dead and resumed. The API
    #: server's watch cache sends a bookmark every minute to watchers that allow bookmarks
    #: (kubernetes/kubernetes:staging/src/k8s.io/apiserver/pkg/storage/cacher/cacher.go,
    #: `defaultBookmarkFrequency`), so 150 s is two missed bookmarks plus margin; a server that
    #: sends none only costs a cheap resume every 150 s on a quiet kind.
    inactivity_timeout: float = 150.0
    #: First reconnect delay bound; doubles per failure up to `backoff_max` (full jitter:
    #: the actual delay is uniform in [0, bound]). 0.8 s and 30 s are the reflector's backoff
    #: (same file as above).
    backoff_initial: float = 0.8
    backoff_max: float = 30.0
    #: A watch connected this long counts as healthy: its end resets the backoff.
    healthy_after: float = 60.0
    #: TCP/TLS connect timeout of every request.
    connect_timeout: float = 10.0
    #: A list page that takes longer than this between two reads of the socket is abandoned.
    list_read_timeout: float = 60.0
    #: Upper bound on an honoured Retry-After, so a bogus header cannot park a kind for hours.
    retry_after_max: float = 300.0

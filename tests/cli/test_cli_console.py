"""The installed `kubevirt-update-exporter` console script, run as a user runs it.

Each test is a case a new user met: a snapshot that lacks kinds, an empty or foreign file, a
broken snapshot with a closed log reader, kubeconfig resolution, a mistyped namespace,
inconsistent flags and errors. They run the console script next to the test interpreter (the
venv's `bin/kubevirt-update-exporter`), never the Python functions behind it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import __version__
from tests import REPO
from tests.cluster import free_port
from tests.exporter_process import eventually

EXAMPLE = REPO / "examples" / "cluster-snapshot.yaml"
EXE = Path(sys.executable).with_name("kubevirt-update-exporter")
PREFIX = "kubevirt-update-exporter: "
#: Generous bounds: the machine is shared with long builds.
RUN_TIMEOUT = 120.0
READY_TIMEOUT = 120.0


def console(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run the console script with `args`; its exit code, stdout and stderr."""
    assert EXE.is_file(), f"the console script is not installed: {EXE}"
    environ = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(EXE), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def example_objects() -> list[dict[str, Any]]:
    """Every object of the bundled example snapshot."""
    return [
        item
        for document in yaml.safe_load_all(EXAMPLE.read_text())
        if document
        for item in document.get("items") or [document]
    ]


def write_list(path: Path, items: Sequence[Mapping[str, Any]], *, kind: str = "List") -> Path:
    """`items` as `kubectl get -o yaml` prints them: one List."""
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": kind, "items": list(items)}))
    return path


def only(kinds: set[str]) -> list[dict[str, Any]]:
    """The example's objects of `kinds`."""
    return [o for o in example_objects() if o["kind"] in kinds]


# -- a broken snapshot under `serve` -----------------------------------------------------------


def late_broken_snapshot(tmp_path: Path) -> Path:
    """A snapshot that parses for a while (so `serve` is listening) and then is not YAML."""
    documents = [
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{a: b}}\n"
        for i in range(20000)
    ]
    path = tmp_path / "late-broken.yaml"
    path.write_text("---\n".join(documents) + "---\nitems: [\n")
    return path


def test_serve_on_a_broken_snapshot_exits_1_when_its_log_reader_has_gone(tmp_path: Path) -> None:
    # `serve ... 2>&1 | head -2`: the reader leaves after "listening"; the failure's log line
    # meets a closed pipe. The process must still stop, with exit code 1.
    snapshot = late_broken_snapshot(tmp_path)
    argv = [str(EXE), "--snapshot", str(snapshot), "--listen", f"127.0.0.1:{free_port()}"]
    popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert popen.stdout is not None
        assert b"serve.starting" in popen.stdout.readline()
        assert b"serve.listening" in popen.stdout.readline()
        popen.stdout.close()
        assert popen.wait(timeout=RUN_TIMEOUT) == 1
    finally:
        popen.kill()
        popen.wait()


def test_serve_on_a_broken_snapshot_logs_one_error_line_naming_the_file(tmp_path: Path) -> None:
    snapshot = late_broken_snapshot(tmp_path)
    result = console(
        "--snapshot",
        str(snapshot),
        "--listen",
        f"127.0.0.1:{free_port()}",
        env={"KUBEVIRT_UPDATE_EXPORTER_LOG_FORMAT": "json"},
    )
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1, errors
    assert str(snapshot) in errors[0]["error"]
    assert "document 20000" in errors[0]["error"]
    assert "exception" not in errors[0]
    assert "Traceback" not in result.stderr


# -- item: a snapshot that lacks kinds ---------------------------------------------------------


@pytest.fixture
def vmi_only(tmp_path: Path) -> Path:
    """What the runbook's own `kubectl get vmi -A -o yaml` saves: VMIs, nothing else."""
    return write_list(tmp_path / "vmi-only.yaml", only({"VirtualMachineInstance"}))


def row(doc: dict[str, Any], namespace: str, name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = doc["vmis"]
    (found,) = [r for r in rows if (r["namespace"], r["name"]) == (namespace, name)]
    return found


def test_report_on_the_full_example_names_no_missing_kind_and_restarts_postgres() -> None:
    result = console("report", "--snapshot", str(EXAMPLE), "-o", "json")
    doc = json.loads(result.stdout)
    assert doc["source"] == {"snapshot": str(EXAMPLE), "missingKinds": [], "skipped": {}}
    primary = row(doc, "db-prod", "postgres-primary")
    assert (primary["runStrategy"], primary["action"]) == ("Always", "restart")
    assert "warning" not in result.stderr


def test_report_on_a_vmi_only_snapshot_says_which_kinds_are_missing(vmi_only: Path) -> None:
    result = console("report", "--snapshot", str(vmi_only), "-o", "json")
    doc = json.loads(result.stdout)
    missing = ["VirtualMachine", "VirtualMachineInstanceMigration", "KubeVirt"]
    assert doc["source"]["missingKinds"] == missing
    for kind in missing:
        assert f"{PREFIX}warning: snapshot {vmi_only} holds no {kind} " in result.stderr
    # No cluster-wide claim rests on the missing KubeVirt CR.
    assert doc["controlPlane"]["kubevirtCRs"] is None
    advice = " ".join(doc["advice"])
    assert "upstream will not update" not in advice
    assert "No KubeVirt CR found" not in advice
    assert "whether automation updates these VMIs is unknown" in advice
    assert not any(a.startswith("Live-migrate") for a in doc["advice"])


def test_a_vmi_whose_vm_was_not_captured_has_an_unknown_run_strategy_never_advice_to_change_it(
    vmi_only: Path,
) -> None:
    doc = json.loads(console("report", "--snapshot", str(vmi_only), "-o", "json").stdout)
    for r in doc["vmis"]:
        if r["vm"] is None:
            continue
        assert r["runStrategy"] is None, r
        assert "runStrategy is unknown" in r["why"] or r["action"] in ("wait", "migrate"), r
        assert "set the VM's runStrategy" not in r["why"], r
        assert "runStrategy :" not in r["why"], r
    table = console("report", "--snapshot", str(vmi_only), "--namespace", "db-prod").stdout
    assert f"Snapshot:  {vmi_only}; not in it: VirtualMachine, " in table
    assert "KubeVirt:  not in the snapshot: the update policy is unknown" in table
    assert "0 KubeVirt CRs" not in table
    (line,) = [x for x in table.splitlines() if x.startswith("db-prod    postgres-primary")]
    assert line.split()[7] == "unknown"  # RUN: not "-", which means standalone
    plan = console("plan", "--snapshot", str(vmi_only), "--namespace", "db-prod").stdout
    assert "set the VM's runStrategy" not in plan
    assert "runStrategy is unknown" in plan
    assert "# WARNING: the snapshot" in plan


def test_serve_on_a_vmi_only_snapshot_warns_which_kinds_are_missing(vmi_only: Path) -> None:
    with Serving(vmi_only) as served:
        assert served.readyz()[0] == 200
        warnings = [
            line for line in served.log_lines() if line["event"] == "snapshot.kinds_missing"
        ]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "warning"
    assert warnings[0]["kinds"] == ["VirtualMachine", "VirtualMachineInstanceMigration", "KubeVirt"]


# -- item: a snapshot without a VMI list -------------------------------------------------------


NO_VMI_LIST = {
    "an empty file": "",
    "items: null": "apiVersion: v1\nkind: List\nitems: null\n",
    "a List of Pods": yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}],
        }
    ),
}


@pytest.mark.parametrize("command", ["report", "plan"])
@pytest.mark.parametrize("content", list(NO_VMI_LIST.values()), ids=list(NO_VMI_LIST))
def test_a_snapshot_without_a_vmi_list_is_an_error_naming_the_file(
    tmp_path: Path, command: str, content: str
) -> None:
    path = tmp_path / "snapshot.yaml"
    path.write_text(content)
    result = console(command, "--snapshot", str(path))
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith(f"{PREFIX}error: ")
    assert f"{path}: holds no VirtualMachineInstance list" in result.stderr


def test_a_captured_empty_vmi_list_is_a_real_zero(tmp_path: Path) -> None:
    # `kubectl get vmi -A -o yaml` on a cluster without VMIs.
    path = write_list(tmp_path / "no-vmis.yaml", [])
    result = console("report", "--snapshot", str(path))
    assert result.returncode == 0, result.stderr
    assert "No outdated VMIs." in result.stdout


def test_serve_on_a_snapshot_without_a_vmi_list_is_not_ready_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with Serving(path) as served:
        eventually(
            lambda: "snapshot.unusable" in served.log_path.read_text(), timeout=READY_TIMEOUT
        )
        status, body = served.readyz()
        assert status == 503
        assert f"snapshot {path} holds no VirtualMachineInstance list" in body
        assert served.popen.poll() is None  # still serving /healthz and the reason


def test_report_names_the_documents_it_skipped(tmp_path: Path) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x"}}
    path = write_list(tmp_path / "with-pods.yaml", [*example_objects(), pod, pod])
    result = console("report", "--snapshot", str(path), "-o", "json")
    assert f"{PREFIX}warning: snapshot {path}: skipped 2 objects" in result.stderr
    assert "(2 Pod)" in result.stderr
    assert json.loads(result.stdout)["source"]["skipped"] == {"Pod": 2}


class Serving:
    """`kubevirt-update-exporter --snapshot PATH` on a free port, JSON logs in a file."""

    def __init__(self, snapshot: Path) -> None:
        self.port = free_port()
        self.log_path = snapshot.with_suffix(".log")
        argv = [str(EXE), "--snapshot", str(snapshot), "--listen", f"127.0.0.1:{self.port}"]
        env = {**os.environ, "KUBEVIRT_UPDATE_EXPORTER_LOG_FORMAT": "json"}
        with self.log_path.open("wb") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)

    def __enter__(self) -> Serving:
        eventually(lambda: self.get("/healthz")[0] == 200, timeout=READY_TIMEOUT)
        eventually(lambda: "snapshot.loaded" in self.log_path.read_text(), timeout=READY_TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        self.popen.terminate()
        self.popen.wait(timeout=RUN_TIMEOUT)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def readyz(self) -> tuple[int, str]:
        return self.get("/readyz")

    def log_lines(self) -> Iterator[dict[str, Any]]:
        for line in self.log_path.read_text().splitlines():
            yield json.loads(line)


# -- item: kubeconfig resolution ---------------------------------------------------------------


def kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig for `server` with a static token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def without_cluster_env(home: Path, **extra: str) -> dict[str, str]:
    """The process environment with no kubeconfig, no pod and HOME at `home`."""
    names = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBEVIRT_UPDATE_EXPORTER_KUBECONFIG")
    env = {k: v for k, v in os.environ.items() if k not in names}
    return {**env, "HOME": str(home), **extra}


def console_env(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`console` with exactly `env` as the environment."""
    return subprocess.run(
        [str(EXE), *args], env=dict(env), capture_output=True, text=True, timeout=RUN_TIMEOUT
    )


MISSING_KUBECONFIG = {
    "flag": (["--kubeconfig", "/nope"], {}, "--kubeconfig='/nope'"),
    "twin": (
        [],
        {"KUBEVIRT_UPDATE_EXPORTER_KUBECONFIG": "/nope"},
        "KUBEVIRT_UPDATE_EXPORTER_KUBECONFIG='/nope'",
    ),
    "KUBECONFIG": ([], {"KUBECONFIG": "/nope"}, "KUBECONFIG='/nope'"),
}


@pytest.mark.parametrize("command", ["report", "plan", "serve"])
@pytest.mark.parametrize("named", list(MISSING_KUBECONFIG))
def test_a_missing_kubeconfig_is_one_message_and_exit_2_however_it_was_named(
    tmp_path: Path, command: str, named: str
) -> None:
    flags, extra, source = MISSING_KUBECONFIG[named]
    result = console_env(command, *flags, env=without_cluster_env(tmp_path, **extra))
    assert result.returncode == 2, result.stderr
    assert f"  - {source}: no such file or directory\n" in result.stderr
    assert f"{PREFIX}error: " in result.stderr
    # No library noise: nothing but our own lines.
    assert "Invalid kube-config" not in result.stderr
    assert '"logger"' not in result.stderr and "Config not found" not in result.stderr


@pytest.mark.parametrize("command", ["report", "plan", "serve"])
def test_no_credentials_at_all_is_exit_2_naming_every_place_looked_at(
    tmp_path: Path, command: str
) -> None:
    result = console_env(command, env=without_cluster_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert f"{PREFIX}error: " in result.stderr
    for place in (
        "--kubeconfig",
        "KUBECONFIG",
        str(tmp_path / ".kube" / "config"),
        "KUBERNETES_SERVICE_HOST",
    ):
        assert place in result.stderr
    assert '"logger"' not in result.stderr and "Invalid kube-config" not in result.stderr


def test_kubeconfig_order_is_flag_then_dollar_kubeconfig_then_home(tmp_path: Path) -> None:
    # Each candidate points at its own unreachable port; the error names the one used.
    home = tmp_path / "home"
    kubeconfig(home / ".kube" / "config", "https://127.0.0.1:3")
    from_env = kubeconfig(tmp_path / "env.kubeconfig", "https://127.0.0.1:2")
    flag = kubeconfig(tmp_path / "flag.kubeconfig", "https://127.0.0.1:1")
    cases = [
        (["--kubeconfig", str(flag)], {"KUBECONFIG": str(from_env)}, "127.0.0.1:1"),
        ([], {"KUBECONFIG": str(from_env)}, "127.0.0.1:2"),
        ([], {}, "127.0.0.1:3"),
    ]
    for flags, extra, used in cases:
        result = console_env("report", *flags, env=without_cluster_env(home, **extra))
        assert result.returncode == 3, result.stderr
        assert used in result.stderr, (flags, extra, result.stderr)


@pytest.mark.parametrize("command", ["report", "plan", "serve"])
def test_help_states_the_kubeconfig_order(command: str) -> None:
    text = " ".join(console(command, "--help").stdout.split())
    assert "default: $KUBECONFIG, else ~/.kube/config, else the in-cluster ServiceAccount" in text
    assert "(default: in-cluster" not in text


# -- item: a namespace that holds no VMI -------------------------------------------------------


@pytest.mark.parametrize("command", ["report", "plan"])
def test_a_namespace_without_vmis_is_said_on_stderr(command: str) -> None:
    result = console(command, "--snapshot", str(EXAMPLE), "--namespace", "does-not-exist")
    assert result.returncode == 0
    assert (
        f"{PREFIX}warning: namespace does-not-exist holds no VMI in snapshot {EXAMPLE} "
        "(or does not exist)"
    ) in result.stderr
    quiet = console(command, "--snapshot", str(EXAMPLE), "--namespace", "db-prod")
    assert "holds no VMI" not in quiet.stderr


# -- item: consistent flags and errors ---------------------------------------------------------


def test_report_and_plan_take_label_selector_and_log_level_like_serve() -> None:
    doc = json.loads(
        console(
            "report", "--snapshot", str(EXAMPLE), "-o", "json", "--label-selector", "app=web-api"
        ).stdout
    )
    names = [r["name"] for r in doc["vmis"]]
    assert names and all(name.startswith("web-api-") for name in names)
    everything = json.loads(console("report", "--snapshot", str(EXAMPLE), "-o", "json").stdout)
    assert len(doc["vmis"]) < len(everything["vmis"])
    plan = console("plan", "--snapshot", str(EXAMPLE), "--label-selector", "app=nothing-has-this")
    assert (plan.returncode, "Nothing to do" in plan.stdout) == (0, True)
    chatty = console("report", "--snapshot", str(EXAMPLE), "--log-level", "info")
    assert "fleet.relisted" in chatty.stderr
    assert "fleet.relisted" not in console("report", "--snapshot", str(EXAMPLE)).stderr


@pytest.mark.parametrize(
    "argv", [["report", "--version"], ["plan", "--version"], ["serve", "--version"], ["--version"]]
)
def test_version_works_before_and_after_a_subcommand(argv: list[str]) -> None:
    result = console(*argv)
    assert (result.returncode, result.stdout) == (0, f"kubevirt-update-exporter {__version__}\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--shard", "x"],
        ["report", "--namespace", "Bad_NS", "--snapshot", str(EXAMPLE)],
        ["report", "--bogus", "--snapshot", str(EXAMPLE)],
        ["plan", "--batch-size", "0", "--snapshot", str(EXAMPLE)],
        ["report", "-o", "xml", "--snapshot", str(EXAMPLE)],
        ["report", "--snapshot", str(REPO / "README.md")],
    ],
)
def test_every_command_prints_errors_with_one_prefix(argv: list[str]) -> None:
    result = console(*argv)
    assert result.returncode in (2, 3)
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors and all(line.startswith(f"{PREFIX}error: ") for line in errors[:1]), result.stderr


def test_an_unknown_flag_of_report_prints_reports_usage() -> None:
    result = console("report", "--bogus", "--snapshot", str(EXAMPLE))
    assert result.returncode == 2
    assert result.stderr.startswith("usage: kubevirt-update-exporter report ")
    assert "'--bogus': unknown argument" in result.stderr


def test_several_bad_flags_are_all_listed() -> None:
    result = console(
        "report",
        "-o",
        "xml",
        "--action",
        "pray",
        "--namespace",
        "Bad_NS",
        "--log-level",
        "loud",
        "--bogus",
    )
    assert result.returncode == 2
    for problem in (
        "-o/--output='xml'",
        "--action='pray'",
        "--namespace='Bad_NS'",
        "--log-level='loud'",
        "'--bogus'",
    ):
        assert problem in result.stderr, problem
    serve = console(
        "--metric-allowlist", "a", "--metric-denylist", "b", "--shard", "x", "--log-level", "y"
    )
    assert serve.returncode == 2
    for problem in ("exclude each other", "--shard='x'", "--log-level='y'"):
        assert problem in serve.stderr, problem


# -- item: a table that fits the terminal ------------------------------------------------------


def long_named_fleet(tmp_path: Path) -> Path:
    """The example plus VMIs whose namespace and name are long, as tenants name them."""
    extra = []
    for obj in only({"VirtualMachineInstance", "VirtualMachine"}):
        if obj["metadata"]["name"] == "postgres-primary":
            renamed = json.loads(json.dumps(obj))
            renamed["metadata"]["namespace"] = "tenant-databases-customer-facing-eu-west-1a"
            renamed["metadata"]["name"] = "postgres-primary-with-a-long-descriptive-name-0"
            extra.append(renamed)
    return write_list(tmp_path / "long.yaml", [*example_objects(), *extra])


def table_rows(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("NAMESPACE"))
    end = next(i for i in range(start, len(lines)) if not lines[i] or lines[i].startswith("("))
    return lines[start:end]


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_the_table_fits_columns_and_never_cuts_a_namespace_or_name(
    tmp_path: Path, columns: int
) -> None:
    path = long_named_fleet(tmp_path)
    result = console("report", "--snapshot", str(path), env={"COLUMNS": str(columns)})
    doc = json.loads(console("report", "--snapshot", str(path), "-o", "json").stdout)
    rows = table_rows(result.stdout)
    assert "~" not in result.stdout
    for line, vmi in zip(rows[1:], doc["vmis"], strict=True):
        assert line.split()[:2] == [vmi["namespace"], vmi["name"]]
    widest = max(len(line) for line in rows)
    if widest > columns:  # only what must stay whole may overflow: NAMESPACE, NAME, ACTION
        assert rows[0].split() == ["NAMESPACE", "NAME", "ACTION"]
        kept = [max(len(v[k]) for v in doc["vmis"]) for k in ("namespace", "name", "action")]
        assert widest == sum(kept) + 2
    if columns >= 200:
        assert rows[0].split() == [
            "NAMESPACE",
            "NAME",
            "NODE",
            "REASON",
            "MIGRATABLE",
            "METHOD",
            "ACTION",
            "RUN",
            "SINCE",
        ]
    else:
        assert f"left out to fit {columns} columns; `-o wide` shows every column" in " ".join(
            result.stdout.split()
        )


def test_the_table_on_an_80_column_terminal_keeps_reasons_readable() -> None:
    result = console("report", "--snapshot", str(EXAMPLE), env={"COLUMNS": "80"})
    rows = table_rows(result.stdout)
    assert max(len(line) for line in rows) <= 80
    assert "~" not in result.stdout
    assert any("no:HostDevice" in line for line in rows)


def test_wide_output_adds_each_rows_why() -> None:
    result = console("report", "--snapshot", str(EXAMPLE), "-o", "wide", env={"COLUMNS": "80"})
    doc = json.loads(console("report", "--snapshot", str(EXAMPLE), "-o", "json").stdout)
    rows = table_rows(result.stdout)
    assert rows[0].split()[-1] == "WHY"
    for line, vmi in zip(rows[1:], doc["vmis"], strict=True):
        assert line.endswith(vmi["why"]), line


def test_advice_never_points_at_a_why_column_the_table_does_not_show() -> None:
    for flags in ([], ["--preflight"]):
        text = console("report", "--snapshot", str(EXAMPLE), *flags).stdout
        advice = " ".join(text[text.index("Advice:") :].split())
        assert "why" in advice
        assert "row's `why`" not in advice and "(see `why`)" not in advice
        assert "`report -o wide`" in advice


# -- item: one runStrategy advice for Halted and Once, with its reason, everywhere -------------


def flat(text: str) -> str:
    """`text` with every run of whitespace and comment markers as one space."""
    return " ".join(text.replace("#", " ").split())


def test_halted_and_once_advice_is_runstrategy_manual_with_one_reason_everywhere() -> None:
    reason = (
        "Manual accepts `virtctl restart` and, like Halted and Once, never starts the VM by "
        "itself; Always would also restart it whenever its guest shuts down"
    )
    runbook = REPO / "docs" / "runbooks" / "OutdatedVirtualMachineInstanceNeedsAction.md"
    for doc in (runbook, REPO / "docs" / "cli.md"):
        text = flat(doc.read_text())
        assert reason in text, doc
        assert "a run strategy that restarts it (`Always`)" not in text, doc
    plan = console("plan", "--snapshot", str(EXAMPLE)).stdout
    assert "runStrategy Once: `virtctl restart` is refused; set the VM's runStrategy to Manual" in (
        flat(plan)
    )
    assert reason in flat(plan)
    doc = json.loads(console("report", "--snapshot", str(EXAMPLE), "-o", "json").stdout)
    once = row(doc, "db-prod", "batch-import")
    assert once["runStrategy"] == "Once" and reason in once["why"]

"""Settings: every serve flag, its environment twin, and every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.selectors import LabelSelector
from exporter.settings import (
    DEFAULTS,
    Settings,
    SettingsError,
    env_name,
    parse_settings,
    serve_parser,
)
from tests.tls import write_tls_pair

ENV = "KUBEVIRT_UPDATE_EXPORTER_"


def problems_of(argv: list[str], environ: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(SettingsError) as caught:
        parse_settings(argv, environ or {})
    return caught.value.problems


def only_problem(argv: list[str], environ: dict[str, str] | None = None) -> str:
    (problem,) = problems_of(argv, environ)
    return problem


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A readable kubeconfig, snapshot, token file and TLS pair."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    snapshot = tmp_path / "fleet.yaml"
    snapshot.write_text("apiVersion: v1\nkind: List\nitems: []\n")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    cert, key = write_tls_pair(tmp_path)
    return {
        "kubeconfig": kubeconfig,
        "snapshot": snapshot,
        "token": token,
        "cert": cert,
        "key": key,
    }


def test_no_flags_and_no_environment_give_the_documented_defaults() -> None:
    settings = parse_settings([], {})
    assert settings == Settings()
    assert (settings.listen_host, settings.listen_port) == ("0.0.0.0", 8080)
    assert settings.namespaces == ()
    assert settings.label_selector is None
    assert (settings.shard, settings.total_shards) == (0, 1)
    assert settings.log_format is None
    assert settings.log_level == "info"


def test_every_flag_is_parsed_into_its_field(files: dict[str, Path]) -> None:
    settings = parse_settings(
        [
            "--listen=127.0.0.1:9100",
            "--kubeconfig", str(files["kubeconfig"]),
            "--namespace", "tenant-a",
            "--namespace", "tenant-b",
            "--label-selector", "tier=gold,!legacy",
            "--metric-allowlist", "kubevirt_update_vmi_outdated,kubevirt_update_kubevirt_.*",
            "--tls-cert-file", str(files["cert"]),
            "--tls-key-file", str(files["key"]),
            "--bearer-token-file", str(files["token"]),
            "--shard", "2",
            "--total-shards", "3",
            "--log-format", "console",
            "--log-level", "DEBUG",
        ],
        {},
    )  # fmt: skip
    assert settings == Settings(
        listen_host="127.0.0.1",
        listen_port=9100,
        kubeconfig=files["kubeconfig"],
        namespaces=("tenant-a", "tenant-b"),
        label_selector="tier=gold,!legacy",
        metric_allowlist=("kubevirt_update_vmi_outdated", "kubevirt_update_kubevirt_.*"),
        tls_cert_file=files["cert"],
        tls_key_file=files["key"],
        bearer_token_file=files["token"],
        shard=2,
        total_shards=3,
        log_format="console",
        log_level="debug",
    )


def test_snapshot_and_denylist_are_parsed(files: dict[str, Path]) -> None:
    settings = parse_settings(
        ["--snapshot", str(files["snapshot"]), "--metric-denylist", "kubevirt_update_vmi_info"], {}
    )
    assert settings.snapshot == files["snapshot"]
    assert settings.metric_denylist == ("kubevirt_update_vmi_info",)
    assert settings.metric_allowlist == ()


def test_a_snapshot_may_be_a_folder(tmp_path: Path) -> None:
    assert parse_settings(["--snapshot", str(tmp_path)], {}).snapshot == tmp_path


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("0.0.0.0:8080", "0.0.0.0", 8080),
        ("[::]:8080", "::", 8080),
        ("[::1]:9000", "::1", 9000),
        ("localhost:65535", "localhost", 65535),
        ("exporter.monitoring.svc:1", "exporter.monitoring.svc", 1),
        (":8081", "", 8081),
    ],
)
def test_listen_accepts_ipv4_bracketed_ipv6_names_and_a_bare_port(
    listen: str, host: str, port: int
) -> None:
    settings = parse_settings(["--listen", listen], {})
    assert (settings.listen_host, settings.listen_port) == (host, port)


@pytest.mark.parametrize(
    ("listen", "complaint"),
    [
        ("8080", "expected HOST:PORT"),
        ("::1:8080", "must be written in brackets"),
        ("[not-ipv6]:8080", "is not an IPv6 address"),
        ("0.0.0.0:http", "port 'http' is not a number"),
        ("0.0.0.0:0", "port '0' is not a number between 1 and 65535"),
        ("0.0.0.0:65536", "port '65536'"),
        ("bad_host!:8080", "is not an IP address or host name"),
    ],
)
def test_a_bad_listen_address_is_named_with_its_value(listen: str, complaint: str) -> None:
    problem = only_problem(["--listen", listen])
    assert problem.startswith(f"--listen={listen!r}: ")
    assert complaint in problem


FLAG_VALUES = {
    "--listen": ("127.0.0.1:9000", "listen_port", 9000),
    "--label-selector": ("app=db", "label_selector", "app=db"),
    "--metric-denylist": ("a_.*,b", "metric_denylist", ("a_.*", "b")),
    "--shard": ("1", "shard", 1),
    "--total-shards": ("4", "total_shards", 4),
    "--log-format": ("json", "log_format", "json"),
    "--log-level": ("warning", "log_level", "warning"),
    "--namespace": ("ns-1,ns-2", "namespaces", ("ns-1", "ns-2")),
}


@pytest.mark.parametrize("flag", sorted(FLAG_VALUES))
def test_every_flag_has_an_environment_twin(flag: str) -> None:
    value, field, expected = FLAG_VALUES[flag]
    environ = {env_name(flag): value}
    if flag == "--shard":
        environ[env_name("--total-shards")] = "2"
    assert getattr(parse_settings([], environ), field) == expected


def test_file_flags_have_environment_twins(files: dict[str, Path]) -> None:
    settings = parse_settings(
        [],
        {
            f"{ENV}KUBECONFIG": str(files["kubeconfig"]),
            f"{ENV}TLS_CERT_FILE": str(files["cert"]),
            f"{ENV}TLS_KEY_FILE": str(files["key"]),
            f"{ENV}BEARER_TOKEN_FILE": str(files["token"]),
            f"{ENV}METRIC_ALLOWLIST": "x",
        },
    )
    assert settings.kubeconfig == files["kubeconfig"]
    assert (settings.tls_cert_file, settings.tls_key_file) == (files["cert"], files["key"])
    assert settings.bearer_token_file == files["token"]
    assert settings.metric_allowlist == ("x",)
    assert (
        parse_settings([], {f"{ENV}SNAPSHOT": str(files["snapshot"])}).snapshot
        == (files["snapshot"])
    )


def test_env_names_are_the_flag_in_upper_snake_case_with_the_prefix() -> None:
    assert env_name("--label-selector") == "KUBEVIRT_UPDATE_EXPORTER_LABEL_SELECTOR"
    assert env_name("--total-shards") == "KUBEVIRT_UPDATE_EXPORTER_TOTAL_SHARDS"


def test_a_flag_wins_over_its_environment_twin() -> None:
    settings = parse_settings(
        ["--listen", "127.0.0.1:9000", "--namespace", "flag-ns", "--log-level", "error"],
        {f"{ENV}LISTEN": "0.0.0.0:1", f"{ENV}NAMESPACE": "env-ns", f"{ENV}LOG_LEVEL": "debug"},
    )
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 9000)
    assert settings.namespaces == ("flag-ns",)
    assert settings.log_level == "error"


def test_a_bad_environment_value_is_ignored_when_its_flag_is_given() -> None:
    settings = parse_settings(["--shard", "0"], {f"{ENV}SHARD": "many"})
    assert settings.shard == 0


def test_an_empty_environment_value_counts_as_unset() -> None:
    assert parse_settings([], {f"{ENV}LISTEN": "", f"{ENV}SNAPSHOT": ""}) == Settings()


def test_unrelated_environment_variables_are_ignored() -> None:
    assert parse_settings([], {"KUBECONFIG": "/nowhere", "LISTEN": "x"}) == Settings()


def test_namespaces_repeat_split_on_commas_and_drop_duplicates() -> None:
    settings = parse_settings(["--namespace", "a,b", "--namespace", "a", "--namespace=c"], {})
    assert settings.namespaces == ("a", "b", "c")


def test_a_bad_namespace_name_is_named() -> None:
    problem = only_problem(["--namespace", "good", "--namespace", "Bad_NS"])
    assert problem.startswith("--namespace='Bad_NS': ")


def test_an_invalid_label_selector_names_the_flag_and_the_term() -> None:
    problem = only_problem(["--label-selector", "app in (a"])
    assert problem.startswith("--label-selector='app in (a': ")
    assert "unbalanced" in problem


def test_allowlist_and_denylist_exclude_each_other() -> None:
    problem = only_problem(["--metric-allowlist", "a", "--metric-denylist", "b"])
    assert "--metric-allowlist and --metric-denylist exclude each other" in problem


def test_an_invalid_metric_regex_is_named_with_its_source() -> None:
    problem = only_problem([], {f"{ENV}METRIC_DENYLIST": "ok_.*,bad(["})
    assert problem.startswith(f"{ENV}METRIC_DENYLIST='bad([': not a regular expression")


def test_tls_needs_both_files(files: dict[str, Path]) -> None:
    problem = only_problem(["--tls-cert-file", str(files["cert"])])
    assert problem == "--tls-cert-file and --tls-key-file must be given together"


def test_a_tls_key_that_does_not_match_the_certificate_is_refused(
    files: dict[str, Path], tmp_path: Path
) -> None:
    (other_dir := tmp_path / "other").mkdir()
    _, other_key = write_tls_pair(other_dir)
    problem = only_problem(
        ["--tls-cert-file", str(files["cert"]), "--tls-key-file", str(other_key)]
    )
    assert problem.startswith(f"--tls-cert-file={str(files['cert'])!r} / --tls-key-file=")
    assert "cannot load the certificate and key" in problem


def test_a_tls_file_that_is_not_pem_is_refused(files: dict[str, Path]) -> None:
    problem = only_problem(
        ["--tls-cert-file", str(files["kubeconfig"]), "--tls-key-file", str(files["key"])]
    )
    assert "cannot load the certificate and key" in problem


def test_a_bearer_token_file_must_exist_and_not_be_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    assert only_problem(["--bearer-token-file", str(empty)]) == (
        f"--bearer-token-file={str(empty)!r}: the token file is empty"
    )
    missing = tmp_path / "missing"
    assert only_problem(["--bearer-token-file", str(missing)]) == (
        f"--bearer-token-file={str(missing)!r}: no such file or directory"
    )


def test_a_kubeconfig_must_be_a_file(tmp_path: Path) -> None:
    assert only_problem(["--kubeconfig", str(tmp_path)]) == (
        f"--kubeconfig={str(tmp_path)!r}: not a regular file"
    )


def test_snapshot_and_kubeconfig_exclude_each_other(files: dict[str, Path]) -> None:
    problem = only_problem(
        ["--snapshot", str(files["snapshot"]), "--kubeconfig", str(files["kubeconfig"])]
    )
    assert "--snapshot and --kubeconfig exclude each other" in problem


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (["--shard", "3", "--total-shards", "3"], "--shard=3 / --total-shards=3"),
        (["--shard", "1"], "--shard=1 / --total-shards=1"),
        (["--shard", "-1"], "--shard='-1': expected an integer >= 0"),
        (["--total-shards", "0"], "--total-shards='0': expected an integer >= 1"),
        (["--total-shards", "two"], "--total-shards='two': expected an integer >= 1"),
    ],
)
def test_shard_must_be_an_integer_below_total_shards(argv: list[str], start: str) -> None:
    assert only_problem(argv).startswith(start)


def test_log_format_and_level_accept_only_known_values() -> None:
    assert set(problems_of(["--log-format", "xml", "--log-level", "loud"])) == {
        "--log-format='xml': expected one of json, console",
        "--log-level='loud': expected one of debug, info, warning, error, critical",
    }


def test_an_unknown_argument_is_a_problem() -> None:
    assert problems_of(["--listn", "0.0.0.0:1"]) == (
        "'--listn': unknown argument",
        "'0.0.0.0:1': unknown argument",
    )


def test_every_problem_is_listed_at_once_each_naming_its_flag_or_variable(tmp_path: Path) -> None:
    problems = problems_of(
        [
            "--listen", "nowhere",
            "--kubeconfig", str(tmp_path / "no-kubeconfig"),
            "--namespace", "UPPER",
            "--label-selector", "=x",
            "--metric-allowlist", "(",
            "--metric-denylist", "y",
            "--tls-key-file", str(tmp_path / "no-key"),
            "--bearer-token-file", str(tmp_path / "no-token"),
            "--shard", "5",
            "--log-format", "yaml",
        ],
        {f"{ENV}TOTAL_SHARDS": "2", f"{ENV}LOG_LEVEL": "verbose", f"{ENV}SNAPSHOT": "/no/snap"},
    )  # fmt: skip
    expected_starts = [
        "--listen='nowhere'",
        f"--kubeconfig={str(tmp_path / 'no-kubeconfig')!r}",
        f"{ENV}SNAPSHOT='/no/snap'",
        "--namespace='UPPER'",
        "--label-selector='=x'",
        "--metric-allowlist='('",
        "--metric-allowlist and --metric-denylist",
        "--tls-cert-file and --tls-key-file must be given together",
        f"--tls-key-file={str(tmp_path / 'no-key')!r}",
        f"--bearer-token-file={str(tmp_path / 'no-token')!r}",
        "--shard=5 / --total-shards=2",
        "--log-format='yaml'",
        f"{ENV}LOG_LEVEL='verbose'",
        "--snapshot and --kubeconfig exclude each other",
    ]
    assert len(problems) == len(expected_starts), problems
    for problem, start in zip(problems, expected_starts, strict=True):
        assert problem.startswith(start), (start, problems)


def test_the_error_message_lists_each_problem_on_its_own_line() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(["--shard", "x", "--log-level", "y"], {})
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid settings:"
    assert lines[1:] == [f"  - {problem}" for problem in caught.value.problems]
    assert len(lines) == 3


def test_a_flag_missing_its_value_is_reported_not_exited() -> None:
    assert "--shard" in only_problem(["--shard"])


def test_scope_carries_namespaces_the_parsed_selector_and_the_shard() -> None:
    scope = parse_settings(
        [
            "--namespace",
            "a",
            "--label-selector",
            "tier=gold",
            "--shard",
            "1",
            "--total-shards",
            "2",
        ],
        {},
    ).scope()
    assert scope.namespaces == frozenset({"a"})
    assert scope.label_selector == LabelSelector.parse("tier=gold")
    assert (scope.shard, scope.total_shards) == (1, 2)


def test_default_scope_admits_everything() -> None:
    scope = DEFAULTS.scope()
    assert scope.namespaces == frozenset()
    assert scope.label_selector is None
    assert (scope.shard, scope.total_shards) == (0, 1)


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        DEFAULTS.listen_port = 1  # type: ignore[misc]  # the point of the test


def test_the_help_parser_declares_every_flag_with_its_environment_twin_documented() -> None:
    text = serve_parser("prog").format_help()
    for flag in [
        "--listen", "--kubeconfig", "--snapshot", "--namespace", "--label-selector",
        "--metric-allowlist", "--metric-denylist", "--tls-cert-file", "--tls-key-file",
        "--bearer-token-file", "--shard", "--total-shards", "--log-format", "--log-level",
    ]:  # fmt: skip
        assert flag in text
    assert "KUBEVIRT_UPDATE_EXPORTER_<FLAG>" in text

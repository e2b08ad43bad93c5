"""`report` and `plan` against a real API server: what they read is what was created, and what
`plan` emits is what the API server accepts."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import main, report
from exporter.plan import BATCH_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from exporter.settings import CommandParser
from tests import builders
from tests.cluster import Cluster

pytestmark = pytest.mark.cluster

VMIMS = "virtualmachineinstancemigrations"


#: Metadata the API server sets itself (resourceVersion must not be sent on create); finalizers
#: are dropped because no controller here would ever remove them.
#: parallelMigrationsPerCluster of our CR: upstream's default too, so the budget is 5 whether
#: ours is the only KubeVirt CR in the shared cluster or not (with more, the default applies).
PARALLEL = 5


def outdated(name: str, namespace: str, **changes: Any) -> dict[str, Any]:
    return builders.vmi(
        name, namespace, launcher_image=builders.OLD_IMAGE, outdated_label=True, **changes
    )


def populate(cluster: Cluster, namespace: str) -> None:
    """A KubeVirt CR without update methods (so every outcome is the same however many CRs other
    tests left behind), four migratable VMIs, one not migratable, one standalone, one current,
    and three migrations of which two are not finished."""
    objects: list[dict[str, Any]] = [
        builders.kubevirt(
            "kv-" + namespace,
            namespace,
            update_methods=(),
            parallel_migrations_per_cluster=PARALLEL,
        ),
        *(outdated(f"web-{i}", namespace, node=f"node-{i % 2}") for i in range(4)),
        *(builders.vm(f"web-{i}", namespace) for i in range(4)),
        outdated("db", namespace, node="node-9", live_migratable=False),
        builders.vm("db", namespace, run_strategy="RerunOnFailure"),
        outdated("pet", namespace, owner_vm=None, live_migratable=False),
        builders.vmi("fresh", namespace),
        builders.vm("fresh", namespace),
        builders.vmim("m-running", namespace, vmi_name="gone-1", phase="Running"),
        builders.vmim("m-scheduling", namespace, vmi_name="gone-2", phase="Scheduling"),
        builders.vmim("m-done", namespace, vmi_name="gone-3", phase="Succeeded"),
    ]
    for obj in objects:
        cluster.create(obj, finalizers=False)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_against_the_api_server_shows_the_objects_created(
    cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(cluster, namespace)
    argv = ["report", "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace]
    code, out, err = run([*argv, "-o", "json"], capsys)
    assert code == 1, err
    doc = json.loads(out)
    rows = {r["name"]: r for r in doc["vmis"]}
    assert {name: (r["method"], r["action"]) for name, r in rows.items()} == {
        **{f"web-{i}": ("none", "migrate") for i in range(4)},
        "db": ("none", "restart"),
        "pet": ("none", "manual"),
    }
    assert all(r["namespace"] == namespace for r in doc["vmis"])
    assert (rows["db"]["node"], rows["db"]["runStrategy"], rows["db"]["vm"]) == (
        "node-9",
        "RerunOnFailure",
        "db",
    )
    assert rows["db"]["notLiveMigratableReason"] == "DisksNotLiveMigratable"
    assert rows["pet"]["vm"] is None
    assert {r["reason"] for r in doc["vmis"]} == {"launcher_image"}
    _, listed = cluster.request("GET", "/apis/kubevirt.io/v1/kubevirts")
    crs = {(kv["metadata"]["namespace"], kv["metadata"]["name"]) for kv in listed["items"]}
    assert doc["controlPlane"]["kubevirtCRs"] == len(crs)
    assert ("kv-" + namespace) in {r["name"] for r in doc["controlPlane"]["kubevirts"]}

    code, table, _ = run(argv, capsys)
    assert code == 1
    assert "web-3" in table and "no:Disks" in table


def test_every_manifest_plan_emits_is_accepted_by_the_api_server(
    cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(cluster, namespace)
    argv = ["plan", "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace]
    code, out, err = run(argv, capsys)
    assert code == 1, err
    docs = [doc for doc in yaml.safe_load_all(out) if doc is not None]
    # budget 5 minus the two migrations not finished: batches of 3
    assert [d["metadata"]["labels"][BATCH_LABEL] for d in docs] == ["1", "1", "1", "2"]
    assert sorted(d["spec"]["vmiName"] for d in docs) == [f"web-{i}" for i in range(4)]
    assert "virtctl restart db -n " + namespace in out
    assert "virtctl stop" not in out

    collection = f"/apis/kubevirt.io/v1/namespaces/{namespace}/{VMIMS}"
    for doc in docs:
        status, body = cluster.request("POST", collection + "?dryRun=All", doc)
        assert status == 201, body
        assert body["metadata"]["name"].startswith(doc["metadata"]["generateName"])
    _, listed = cluster.request("GET", collection)
    assert len(listed["items"]) == 3  # the dry runs created nothing


def test_one_batch_created_for_real_is_selectable_and_drops_out_of_the_next_plan(
    cluster: Cluster, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(cluster, namespace)
    argv = ["plan", "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace]
    _, out, _ = run(argv, capsys)
    first = [
        d for d in yaml.safe_load_all(out) if d and d["metadata"]["labels"][BATCH_LABEL] == "1"
    ]
    collection = f"/apis/kubevirt.io/v1/namespaces/{namespace}/{VMIMS}"
    for doc in first:
        status, body = cluster.request("POST", collection, doc)
        assert status == 201, body

    selector = f"?labelSelector={MANAGED_BY_LABEL}%3D{MANAGED_BY},{BATCH_LABEL}%3D1"
    _, ours = cluster.request("GET", collection + selector)
    migrated = sorted(item["spec"]["vmiName"] for item in ours["items"])
    assert migrated == sorted(d["spec"]["vmiName"] for d in first)

    _, out, _ = run(argv, capsys)
    planned = [d["spec"]["vmiName"] for d in yaml.safe_load_all(out) if d is not None]
    assert planned and not set(planned) & set(migrated)
    code, report, _ = run(["report", *argv[1:], "-o", "json"], capsys)
    assert code == 1  # web-3, db and pet still need a human
    methods = {r["name"]: r["method"] for r in json.loads(report)["vmis"]}
    assert {methods[name] for name in migrated} == {"in_progress"}


def test_report_without_permission_exits_3_naming_the_forbidden_resource(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = cluster.write_kubeconfig(
        tmp_path / "restricted.kubeconfig", token=cluster.restricted_token
    )
    code, out, err = run(["report", "--kubeconfig", str(kubeconfig)], capsys)
    assert (code, out) == (3, "")
    assert "virtualmachineinstances" in err
    assert "forbidden" in err.lower()


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_report_shows_progress_on_a_terminal_and_keeps_stdout_clean(
    cluster: Cluster, namespace: str
) -> None:
    populate(cluster, namespace)
    parser = CommandParser()
    report.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["report", "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace, "-o", "json"]
    )
    out, err = io.StringIO(), Terminal()
    assert report.run(args, environ={}, stdout=out, stderr=err) == 1
    assert len(json.loads(out.getvalue())["vmis"]) == 6
    progress = err.getvalue()
    assert "\rreading virtualmachineinstances: 7" in progress
    assert (
        "read 7 virtualmachineinstances, 6 virtualmachines, 3 virtualmachineinstancemigrations"
        in progress
    )

    quiet = io.StringIO()
    report.run(args, environ={}, stdout=io.StringIO(), stderr=quiet)
    assert quiet.getvalue() == ""

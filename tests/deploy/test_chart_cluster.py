"""The chart's manifests are accepted by a real API server, and its RBAC is exactly enough.

- Every rendered object of every ci/ scenario passes a server-side dry-run create (strict field
  validation), except the prometheus-operator kinds, whose CRDs the test cluster does not have.
- The pod the chart renders is admitted in a namespace enforcing the `restricted` Pod Security
  Standard.
- The rendered ClusterRole, bound to the token user `restricted`, lets a real exporter process sync
  every kind; with a kind or the `watch` verb taken away, the exporter names what it is forbidden
  (log, `list_total`/`watch_total{result="forbidden"}`, /readyz) and keeps running.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.chart import CI_VALUES, REPO, Obj, of_kind, one, render
from tests.cluster import RESTRICTED_USER, Cluster, free_port

pytestmark = pytest.mark.cluster

#: Kinds whose CRDs (monitoring.coreos.com) the test cluster does not serve.
WITHOUT_CRD = {"ServiceMonitor", "PrometheusRule"}
#: (apiVersion, kind) -> (collection path under /api or /apis, namespaced)
COLLECTIONS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "ServiceAccount"): ("/api/v1/{ns}serviceaccounts", True),
    ("v1", "Service"): ("/api/v1/{ns}services", True),
    ("v1", "ConfigMap"): ("/api/v1/{ns}configmaps", True),
    ("v1", "Pod"): ("/api/v1/{ns}pods", True),
    ("apps/v1", "Deployment"): ("/apis/apps/v1/{ns}deployments", True),
    ("apps/v1", "StatefulSet"): ("/apis/apps/v1/{ns}statefulsets", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): (
        "/apis/networking.k8s.io/v1/{ns}networkpolicies",
        True,
    ),
    ("rbac.authorization.k8s.io/v1", "Role"): (
        "/apis/rbac.authorization.k8s.io/v1/{ns}roles",
        True,
    ),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): (
        "/apis/rbac.authorization.k8s.io/v1/{ns}rolebindings",
        True,
    ),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): (
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        False,
    ),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): (
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        False,
    ),
}
#: How long a freshly started exporter may take to list four kinds on a loaded 2-core machine.
SYNC_TIMEOUT = 90.0


def collection_path(obj: Obj) -> str:
    """The REST collection an object is created in."""
    key = (obj["apiVersion"], obj["kind"])
    assert key in COLLECTIONS, f"no REST path known for {key}"
    template, namespaced = COLLECTIONS[key]
    ns = f"namespaces/{obj['metadata']['namespace']}/" if namespaced else ""
    return template.format(ns=ns)


def object_path(obj: Obj) -> str:
    return f"{collection_path(obj)}/{obj['metadata']['name']}"


def create(cluster: Cluster, obj: Obj, *, dry_run: bool = False) -> tuple[int, dict[str, Any]]:
    """POST one object (strict field validation); returns the API server's answer."""
    query = "?fieldValidation=Strict" + ("&dryRun=All" if dry_run else "")
    return cluster.request("POST", collection_path(obj) + query, obj)


def delete(cluster: Cluster, obj: Obj) -> None:
    status, body = cluster.request("DELETE", object_path(obj))
    assert status in (200, 202, 404), body


def release(
    scenario: Path | None = None, *, namespace: str, sets: list[str] | None = None
) -> list[Obj]:
    """The chart rendered into `namespace` under a unique name (cluster-scoped names differ)."""
    name = f"fullnameOverride=kue-{uuid.uuid4().hex[:8]}"
    return render([scenario] if scenario else [], sets=[name, *(sets or [])], namespace=namespace)


def wait_for(what: str, check: Callable[[], bool], timeout: float = SYNC_TIMEOUT) -> None:
    """Poll `check` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


# -- server-side dry-run -----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", CI_VALUES, ids=lambda path: path.name)
def test_api_server_accepts_every_rendered_object(
    cluster: Cluster, namespace: str, scenario: Path
) -> None:
    objects = release(scenario, namespace=namespace)
    skipped = [obj["kind"] for obj in objects if obj["kind"] in WITHOUT_CRD]
    assert set(skipped) <= WITHOUT_CRD
    checked = [obj for obj in objects if obj["kind"] not in WITHOUT_CRD]
    assert checked
    for obj in checked:
        if "namespace" in obj["metadata"]:
            cluster.ensure_namespace(obj["metadata"]["namespace"])
        status, body = create(cluster, obj, dry_run=True)
        assert status == 201, f"{obj['kind']} {obj['metadata']['name']}: {status} {body}"


def test_the_schemas_token_lifetime_minimum_is_the_api_servers(
    cluster: Cluster, namespace: str
) -> None:
    """values.schema.json refuses 599 s; so does the API server, for the pod we render."""
    objects = release(namespace=namespace, sets=["serviceAccount.tokenExpirationSeconds=600"])
    template = one(objects, "Deployment")["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "exporter", "namespace": namespace},
        "spec": template["spec"],
    }
    status, body = create(cluster, pod, dry_run=True)
    assert status == 201, body
    (volume,) = [v for v in pod["spec"]["volumes"] if "projected" in v]
    volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] = 599
    status, body = create(cluster, pod, dry_run=True)
    assert status == 422, body
    assert "expirationSeconds" in body["message"] and "10 minutes" in body["message"], body


def test_rendered_pod_meets_the_restricted_pod_security_standard(cluster: Cluster) -> None:
    ns = f"t-psa-{uuid.uuid4().hex[:8]}"
    status, body = cluster.request(
        "POST",
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        },
    )
    assert status == 201, body
    objects = release(namespace=ns, sets=["tls.enabled=true", "tls.secretName=x"])
    account = one(objects, "ServiceAccount")
    status, body = create(cluster, account)
    assert status == 201, body
    template = one(objects, "Deployment")["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "exporter", "namespace": ns, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }
    status, body = create(cluster, pod, dry_run=True)
    assert status == 201, body
    # The admission check is live: the same pod as root is refused.
    rooted = json.loads(json.dumps(pod))
    rooted["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    status, body = create(cluster, rooted, dry_run=True)
    assert status == 403, body
    assert "restricted" in body.get("message", "")


# -- the RBAC proof with a real exporter --------------------------------------------------------


@dataclass
class Exporter:
    """A running `python -m exporter` process on a loopback port, logging JSON to a file."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError as err:  # not listening yet
            return 0, str(err)

    def sample(self, metric: str, /, **labels: str) -> float | None:
        """The value of one sample of /metrics, None when absent."""
        status, text = self.get("/metrics")
        assert status == 200, text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == metric and labels.items() <= sample.labels.items():
                    return float(sample.value)
        return None

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    out.append(event)
        return out

    def alive(self) -> bool:
        return self.process.poll() is None


@contextlib.contextmanager
def exporter(kubeconfig: Path, tmp_path: Path, *args: str) -> Iterator[Exporter]:
    """Run the exporter against the test cluster for the duration of the block."""
    port = free_port()
    log = tmp_path / f"exporter-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "--kubeconfig",
                str(kubeconfig),
                "--listen",
                f"127.0.0.1:{port}",
                "--log-format",
                "json",
                *args,
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Exporter(process, port, log)
    try:
        wait_for("the exporter to answer /healthz", lambda: running.get("/healthz")[0] == 200, 60)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        print(f"exporter log ({log}):\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def granted(cluster: Cluster, objects: list[Obj]) -> Iterator[None]:
    """Create RBAC objects for real; delete them afterwards (`restricted` starts with no rights)."""
    created: list[Obj] = []
    try:
        for obj in objects:
            status, body = create(cluster, obj)
            assert status == 201, f"{obj['kind']}: {status} {body}"
            created.append(obj)
        yield
    finally:
        for obj in reversed(created):
            delete(cluster, obj)


def for_restricted_user(binding: Obj) -> Obj:
    """The chart's binding, with the token user `restricted` as its subject instead."""
    user = {"kind": "User", "name": RESTRICTED_USER, "apiGroup": "rbac.authorization.k8s.io"}
    return {**binding, "subjects": [user]}


def cluster_rbac(objects: list[Obj]) -> list[Obj]:
    """The rendered ClusterRole and its binding, bound to `restricted`."""
    return [
        one(objects, "ClusterRole"),
        for_restricted_user(one(objects, "ClusterRoleBinding")),
    ]


def without(role: Obj, *, resource: str | None = None, verb: str | None = None) -> Obj:
    """The role with one resource or one verb taken out of every rule."""
    rules = [
        {
            **rule,
            "resources": [r for r in rule["resources"] if r != resource],
            "verbs": [v for v in rule["verbs"] if v != verb],
        }
        for rule in role["rules"]
    ]
    return {**role, "rules": [rule for rule in rules if rule["resources"]]}


def a_vmi(namespace: str, name: str) -> Obj:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"domain": {"devices": {}}},
        "status": {
            "phase": "Running",
            "nodeName": "node-1",
            "launcherContainerImageVersion": "registry.example/virt-launcher:v1.6.0",
            "conditions": [{"type": "LiveMigratable", "status": "True"}],
        },
    }


def restricted_kubeconfig(cluster: Cluster, tmp_path: Path) -> Path:
    return cluster.write_kubeconfig(
        tmp_path / "restricted.kubeconfig", token=cluster.restricted_token
    )


def test_rendered_cluster_role_is_enough_to_sync_every_kind(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.create(a_vmi(namespace, "vm-a"))
    objects = release(namespace=namespace)
    kubeconfig = restricted_kubeconfig(cluster, tmp_path)
    status, _ = cluster.request(
        "GET", "/apis/kubevirt.io/v1/virtualmachineinstances", token=cluster.restricted_token
    )
    assert status == 403, "the restricted user must start without rights"
    with granted(cluster, cluster_rbac(objects)), exporter(kubeconfig, tmp_path) as running:
        wait_for("/readyz 200", lambda: running.get("/readyz")[0] == 200)
        for resource in (
            "virtualmachineinstances",
            "virtualmachines",
            "virtualmachineinstancemigrations",
            "kubevirts",
        ):
            assert running.sample("kubevirt_update_exporter_synced", resource=resource) == 1
            assert not running.sample(
                "kubevirt_update_exporter_list_total", resource=resource, result="forbidden"
            )
        assert running.sample("kubevirt_update_vmi_info", namespace=namespace, name="vm-a") == 1


def test_exporter_names_a_kind_its_role_does_not_grant_and_stays_up_unready(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    objects = release(namespace=namespace)
    role, binding = cluster_rbac(objects)
    missing = "virtualmachineinstancemigrations"
    kubeconfig = restricted_kubeconfig(cluster, tmp_path)
    with (
        granted(cluster, [without(role, resource=missing), binding]),
        exporter(kubeconfig, tmp_path) as running,
    ):
        wait_for(
            f"list_total{{resource={missing},result=forbidden}}",
            lambda: bool(
                running.sample(
                    "kubevirt_update_exporter_list_total", resource=missing, result="forbidden"
                )
            ),
        )
        wait_for(
            "the other kinds to sync",
            lambda: all(
                running.sample("kubevirt_update_exporter_synced", resource=r) == 1
                for r in ("virtualmachineinstances", "virtualmachines", "kubevirts")
            ),
        )
        status, text = running.get("/readyz")
        assert status == 503
        assert missing in text and "forbidden" in text
        assert running.sample("kubevirt_update_exporter_synced", resource=missing) == 0
        assert [
            e
            for e in running.events()
            if e.get("resource") == missing and e.get("result") == "forbidden"
        ], "the log must name the forbidden resource"
        assert running.alive()
        assert running.get("/healthz")[0] == 200


def test_exporter_names_a_forbidden_watch_and_keeps_running(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    objects = release(namespace=namespace)
    role, binding = cluster_rbac(objects)
    kubeconfig = restricted_kubeconfig(cluster, tmp_path)
    with (
        granted(cluster, [without(role, verb="watch"), binding]),
        exporter(kubeconfig, tmp_path) as running,
    ):
        resource = "virtualmachineinstances"
        wait_for(
            f"watch_total{{resource={resource},result=forbidden}}",
            lambda: bool(
                running.sample(
                    "kubevirt_update_exporter_watch_total", resource=resource, result="forbidden"
                )
            ),
        )
        assert [
            e
            for e in running.events()
            if e.get("resource") == resource and e.get("result") == "forbidden"
        ], "the log must name the resource whose watch is forbidden"
        assert running.alive()
        assert running.get("/healthz")[0] == 200


def test_namespaced_roles_are_enough_to_sync_a_scoped_exporter(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.create(a_vmi(namespace, "vm-b"))
    objects = release(namespace=namespace, sets=[f"namespaces[0]={namespace}"])
    role, binding = cluster_rbac(objects)
    (ns_role,) = of_kind(objects, "Role")
    ns_binding = for_restricted_user(one(objects, "RoleBinding"))
    kubeconfig = restricted_kubeconfig(cluster, tmp_path)
    with (
        granted(cluster, [role, binding, ns_role, ns_binding]),
        exporter(kubeconfig, tmp_path, "--namespace", namespace) as running,
    ):
        wait_for("/readyz 200", lambda: running.get("/readyz")[0] == 200)
        assert running.sample("kubevirt_update_vmi_info", namespace=namespace, name="vm-b") == 1
        # Outside its namespaces the user still may not list VMIs: the Role is the grant.
        status, _ = cluster.request(
            "GET", "/apis/kubevirt.io/v1/virtualmachineinstances", token=cluster.restricted_token
        )
        assert status == 403

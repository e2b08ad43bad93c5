"""The user's path on a real node: image -> `helm install` -> a pod -> Prometheus scrapes it.

One single-node cluster (tests/node: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet, containerd + runc, CNI on a bridge of its own) runs the image built from
the Dockerfile (scripts/build-image), imported into containerd: the chart is installed with its
default values plus only the image override (pullPolicy Never: there is no registry), in a
namespace enforcing the restricted Pod Security Standard. What a pod serves is compared with a
reference: the same exporter run here, outside the cluster, against the same API server.

The tests share the node and the fleet and run in file order (install before upgrade before
uninstall). If any component cannot start, they fail with its logs; they never skip.

Token rotation needs time that cannot be shortened: the API server grants a projected token no
less than 600 s and accepts it up to a minute past its expiry. So a second release with
serviceAccount.tokenExpirationSeconds=600 is installed by the first test, in a namespace of its
own, and the rotation test runs last: the other tests run while its token ages.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import REPO, builders
from tests.chart import CHART, helm_binary
from tests.cluster import Cluster
from tests.exporter_process import (
    ExporterProcess,
    Samples,
    eventually,
    parse_exposition,
    select,
)
from tests.node import NODE_NAME, PAUSE_IMAGE, Node
from tests.node.image import IMAGE_REPOSITORY, build_image, image_tag
from tests.prometheus import RULES, Prometheus, prometheus_process

pytestmark = pytest.mark.node

ARTIFACTS = REPO / "test-artifacts"
JOB = "kubevirt-update-exporter"
RELEASE = "kue"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
#: The only values a user running a locally built image must set.
IMAGE_VALUES = [
    f"image.repository={IMAGE_REPOSITORY}",
    f"image.tag={image_tag()}",
    "image.pullPolicy=Never",
]

Json = dict[str, Any]


# -- the node and the fleet --------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    workdir = tmp_path_factory.mktemp("node")
    try:
        started = Node.start(workdir, images=[build_image()])
    except BaseException:
        keep_logs(workdir)
        raise
    try:
        yield started
    finally:
        failed = request.session.testsfailed
        started.stop()
        if failed:
            keep_logs(workdir)


def keep_logs(workdir: Path) -> None:
    kept = ARTIFACTS / f"node-{os.getpid()}"
    kept.mkdir(parents=True, exist_ok=True)
    for log in workdir.rglob("*.log"):
        shutil.copy(log, kept / log.name)
    print(f"\nnode logs kept in {kept}")


@dataclass(frozen=True)
class Fleet:
    """The KubeVirt objects the tests created."""

    namespaces: tuple[str, ...]
    vmis: int


@pytest.fixture(scope="module")
def fleet(node: Node) -> Fleet:
    """A converged KubeVirt CR (LiveMigrate) and, over three namespaces, outdated VMIs that will
    migrate, restart or need a human, a failed update migration, and up-to-date VMIs."""
    cluster = node.cluster
    suffix = uuid.uuid4().hex[:6]
    apps, db, edge = f"apps-{suffix}", f"db-{suffix}", f"edge-{suffix}"
    objects: list[Json] = [builders.kubevirt("kubevirt", "kubevirt", reported_outdated=7)]
    for i in range(8):
        name = f"web-{i}"
        objects += [
            builders.vmi(
                name, apps, launcher_image=builders.OLD_IMAGE, outdated_label=True, node=NODE_NAME
            ),
            builders.vm(name, apps),
        ]
    for i in range(4):
        objects += [builders.vmi(f"fresh-{i}", apps), builders.vm(f"fresh-{i}", apps)]
    for i in range(3):
        name = f"pg-{i}"
        objects += [
            builders.vmi(
                name, db, launcher_image=builders.OLD_IMAGE, outdated_label=True,
                live_migratable=False,
            ),
            builders.vm(name, db, run_strategy="Always"),
        ]  # fmt: skip
    objects += [
        builders.vmi(
            "router", edge, launcher_image=builders.OLD_IMAGE, outdated_label=True,
            owner_vm=None, live_migratable=False,
        ),
        builders.vmi("gw", edge, launcher_image=builders.OLD_IMAGE, outdated_label=True),
        builders.vm("gw", edge),
        builders.vmim("attempt-1", edge, vmi_name="gw", phase="Failed", workload_update=True),
    ]  # fmt: skip
    create_fleet_objects(cluster, objects)
    vmis = sum(1 for obj in objects if obj["kind"] == "VirtualMachineInstance")
    return Fleet(namespaces=(apps, db, edge), vmis=vmis)


def create_fleet_objects(cluster: Cluster, objects: list[Json]) -> None:
    """Create KubeVirt objects, VMs first: a VMI's ownerReference must carry its VM's real uid,
    or the garbage collector (a real kube-controller-manager runs here) deletes the VMI as an
    orphan."""
    uids: dict[tuple[str, str], str] = {}
    for obj in sorted(objects, key=lambda o: o["kind"] != "VirtualMachine"):
        meta = obj["metadata"]
        for ref in meta.get("ownerReferences", []):
            if ref["kind"] == "VirtualMachine":
                ref["uid"] = uids[(meta["namespace"], ref["name"])]
        created = cluster.create(obj, finalizers=False)
        uids[(meta["namespace"], meta["name"])] = created["metadata"]["uid"]


@pytest.fixture(scope="module")
def reference(
    node: Node, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    """The exporter run here against the same API server: what a pod must serve."""
    process = ExporterProcess(
        ["--kubeconfig", str(node.cluster.kubeconfig)],
        workdir=tmp_path_factory.mktemp("reference"),
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


# -- helpers -----------------------------------------------------------------------------------


def helm(cluster: Cluster, *args: str) -> str:
    proc = subprocess.run(
        [str(helm_binary()), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stderr}"
    return proc.stdout


def restricted_namespace(cluster: Cluster, name: str) -> str:
    """A namespace that enforces the restricted Pod Security Standard."""
    labels = {
        f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
    }
    status, body = cluster.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}},
    )
    assert status == 201, body
    return name


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:  # an error answer holds the connection until closed
            return err.code, err.read().decode()


def scrape(pod: Json, port: int = 8080) -> Samples:
    status, text = get(f"http://{pod['status']['podIP']}:{port}/metrics")
    assert status == 200
    return parse_exposition(text)


def fleet_series(samples: Samples) -> Samples:
    """What the exporter says about the cluster: its families without its own health."""
    return {
        key: value
        for key, value in samples.items()
        if key[0].startswith("kubevirt_update_")
        and not key[0].startswith("kubevirt_update_exporter_")
    }


def agrees(pod: Json, reference: ExporterProcess, port: int = 8080) -> bool:
    expected = fleet_series(reference.scrape())
    assert len(expected) > 50
    return fleet_series(scrape(pod, port)) == expected


# -- a short-lived token (installed first: it ages while the other tests run) ------------------

TOKEN_RELEASE = "kue-token"
TOKEN_NAMESPACE = "rotation"
TOKEN_SELECTOR = f"app.kubernetes.io/instance={TOKEN_RELEASE}"
#: The shortest lifetime the API server grants a projected token.
TOKEN_LIFETIME = 600
#: The chart's projected token volume.
TOKEN_VOLUME = "kube-api-access"
#: The API server accepts a token up to a minute past its `exp` (go-jose's DefaultLeeway, used
#: by kubernetes/kubernetes pkg/serviceaccount/claims.go).
JWT_LEEWAY = 60


@dataclass(frozen=True)
class ShortToken:
    """The release whose pod runs on a TOKEN_LIFETIME token, and the first token it was given."""

    pod: Json
    first_token: str


def jwt_claims(token: str) -> Json:
    """The payload of a JWT (not verified: the API server does that)."""
    payload = token.split(".")[1]
    claims: Json = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


@pytest.fixture(scope="module")
def short_token(node: Node, fleet: Fleet) -> Iterator[ShortToken]:
    """`helm install` with the image override and serviceAccount.tokenExpirationSeconds=600 in
    a restricted namespace of its own (the Prometheus and uninstall tests look at `monitoring`
    and the `kue` release only)."""
    namespace = restricted_namespace(node.cluster, TOKEN_NAMESPACE)
    helm(
        node.cluster,
        "install", TOKEN_RELEASE, str(CHART), "--namespace", namespace,
        *[arg for value in IMAGE_VALUES for arg in ("--set", value)],
        "--set", f"serviceAccount.tokenExpirationSeconds={TOKEN_LIFETIME}",
    )  # fmt: skip
    try:
        try:
            (pod,) = node.ready_pods(namespace, TOKEN_SELECTOR, 1)
        except Exception as err:
            raise AssertionError(f"{err}\n{node.describe(namespace)}") from err
        token = node.projected_file(pod, TOKEN_VOLUME, "token").read_text()
        yield ShortToken(pod=pod, first_token=token)
    finally:
        helm(node.cluster, "uninstall", TOKEN_RELEASE, "--namespace", namespace, "--wait")


def test_a_pod_with_a_short_lived_token_starts_on_it_and_serves_the_fleet(
    node: Node, short_token: ShortToken, reference: ExporterProcess
) -> None:
    pod = short_token.pod
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    (volume,) = [v for v in spec["volumes"] if v["name"] == TOKEN_VOLUME]
    (projection,) = [s for s in volume["projected"]["sources"] if "serviceAccountToken" in s]
    assert projection["serviceAccountToken"]["expirationSeconds"] == TOKEN_LIFETIME
    # The kubelet asked for exactly that lifetime and the API server granted it (a 3607 s token
    # would have been extended to a year).
    claims = jwt_claims(short_token.first_token)
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME, claims
    assert claims["kubernetes.io"]["pod"]["uid"] == pod["metadata"]["uid"], claims
    status, body = node.cluster.request(
        "GET", "/apis/kubevirt.io/v1/virtualmachineinstances", token=short_token.first_token
    )
    assert status == 200, body
    eventually(
        lambda: agrees(pod, reference), timeout=120, what="the short-token pod's /metrics agree"
    )


# -- install, Ready, /metrics ------------------------------------------------------------------


def test_helm_install_runs_a_ready_pod_serving_what_the_api_server_holds(
    node: Node, fleet: Fleet, reference: ExporterProcess
) -> None:
    namespace = restricted_namespace(node.cluster, "monitoring")
    helm(
        node.cluster,
        "install", RELEASE, str(CHART), "--namespace", namespace,
        *[arg for value in IMAGE_VALUES for arg in ("--set", value)],
    )  # fmt: skip
    try:
        (pod,) = node.ready_pods(namespace, SELECTOR, 1)
    except Exception as err:
        raise AssertionError(f"{err}\n{node.describe(namespace)}") from err
    spec = pod["spec"]
    assert spec["nodeName"] == NODE_NAME
    (container,) = spec["containers"]
    assert container["image"] == f"{IMAGE_REPOSITORY}:{image_tag()}"
    # In-cluster config: the projected token and kube-root-ca.crt, nothing else.
    (projected,) = [v["projected"] for v in spec["volumes"] if "projected" in v]
    sources = {next(iter(source)) for source in projected["sources"]}
    assert sources == {"serviceAccountToken", "configMap", "downwardAPI"}
    assert container.get("args", []) == [] or "--kubeconfig" not in " ".join(container["args"])
    eventually(
        lambda: agrees(pod, reference), timeout=120, what="the pod's /metrics = the reference"
    )
    samples = scrape(pod)
    outdated = sum(v for k, v in samples.items() if k[0] == "kubevirt_update_outdated_vmis")
    assert outdated == fleet.vmis - 4  # every VMI but the four fresh ones
    # Served on the pod's own address, through the pod network, as Prometheus sees it.
    status, page = get(f"http://{pod['status']['podIP']}:8080/")
    assert status == 200 and "kubevirt-update-exporter" in page


# -- Prometheus --------------------------------------------------------------------------------


def prometheus_config(cluster: Cluster, namespace: str) -> Json:
    """Pod discovery as users configure it: the API server, the namespace, the chart's labels
    and its `metrics` port, honor_labels as the chart's ServiceMonitor sets it."""
    pki = cluster.pki
    return {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "honor_labels": True,
                "kubernetes_sd_configs": [
                    {
                        "role": "pod",
                        "api_server": cluster.server,
                        "tls_config": {
                            "ca_file": str(pki.ca_file),
                            "cert_file": str(pki.admin_cert),
                            "key_file": str(pki.admin_key),
                        },
                        "namespaces": {"names": [namespace]},
                    }
                ],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                        "regex": "kubevirt-update-exporter",
                        "action": "keep",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                        "regex": "metrics",
                        "action": "keep",
                    },
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                ],
            }
        ],
    }


def upstream_prometheus() -> Path:
    """Prometheus with Kubernetes service discovery (Debian's package is built without it),
    built by scripts/install-tools."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "install-tools")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"scripts/install-tools failed:\n{proc.stderr[-3000:]}"
    binary = Path(proc.stdout.strip().splitlines()[-1]) / "prometheus-upstream"
    assert binary.exists(), f"{binary} is missing after scripts/install-tools"
    return binary


@pytest.fixture
def prometheus(node: Node, tmp_path: Path) -> Iterator[Prometheus]:
    config = prometheus_config(node.cluster, "monitoring")
    with prometheus_process(upstream_prometheus(), config, tmp_path) as client:
        yield client


def test_prometheus_discovers_the_pod_scrapes_it_and_the_rules_evaluate(
    node: Node, fleet: Fleet, reference: ExporterProcess, prometheus: Prometheus
) -> None:
    (pod,) = node.ready_pods("monitoring", SELECTOR, 1)

    def up() -> list[Json]:
        assert prometheus.process.poll() is None, prometheus.log.read_text()[-3000:]
        return prometheus.query(f'up{{job="{JOB}"}} == 1')

    (target,) = eventually(up, timeout=120, what=f"a scrape of the pod\n{prometheus.log}")
    assert target["metric"]["instance"] == f"{pod['status']['podIP']}:8080"
    assert target["metric"]["pod"] == pod["metadata"]["name"]
    # honor_labels: the VMIs' namespaces, not the pod's.
    by_namespace = eventually(
        lambda: prometheus.query("sum by (namespace) (kubevirt_update_outdated_vmis)"),
        timeout=60,
        what="the outdated aggregate in Prometheus",
    )
    assert {s["metric"]["namespace"]: float(s["value"][1]) for s in by_namespace} == {
        fleet.namespaces[0]: 8,
        fleet.namespaces[1]: 3,
        fleet.namespaces[2]: 2,
    }

    def evaluated() -> list[Json]:
        groups = prometheus.get("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert rules and all(r["health"] == "ok" and "lastEvaluation" in r for r in rules), rules
        assert all(not r["lastEvaluation"].startswith("0001") for r in rules), rules
        return rules

    eventually(evaluated, timeout=60, what="every shipped rule evaluated")
    expected = {
        # Outdated VMIs exist, some need a human, an update migration failed: pending (`for`).
        "OutdatedVirtualMachineInstanceWorkloads",
        "OutdatedVirtualMachineInstanceNeedsAction",
        "VirtualMachineInstanceUpdateMigrationsFailing",
    }

    def alerting() -> set[str]:
        rules = evaluated()
        active = {r["name"] for r in rules if r.get("alerts")}
        # The target is up: the down alert must have cleared once the first scrape landed.
        return (
            active if expected <= active and "KubevirtUpdateExporterDown" not in active else set()
        )

    eventually(alerting, timeout=60, what="the alerts of this fleet, and no down alert")


# -- upgrade, uninstall ------------------------------------------------------------------------


def test_helm_upgrade_with_a_changed_value_rolls_the_pod(
    node: Node, reference: ExporterProcess
) -> None:
    (before,) = node.ready_pods("monitoring", SELECTOR, 1)
    helm(
        node.cluster,
        "upgrade", RELEASE, str(CHART), "--namespace", "monitoring", "--reuse-values",
        "--set", "log.level=debug",
    )  # fmt: skip

    def rolled() -> Json | None:
        pods = node.ready_pods("monitoring", SELECTOR, 1)
        return pods[0] if pods[0]["metadata"]["uid"] != before["metadata"]["uid"] else None

    after = node.wait(rolled, "a new Ready pod after the upgrade")
    assert isinstance(after, dict)
    (container,) = after["spec"]["containers"]
    assert "--log-level=debug" in container.get("args", []) or any(
        env.get("value") == "debug" for env in container.get("env", [])
    ), container
    eventually(lambda: agrees(after, reference), timeout=120, what="the new pod agrees")


#: Every kind the chart can render in deployment mode, with its collection path.
CHART_KINDS = {
    "Deployment": "/apis/apps/v1/namespaces/monitoring/deployments",
    "ReplicaSet": "/apis/apps/v1/namespaces/monitoring/replicasets",
    "Pod": "/api/v1/namespaces/monitoring/pods",
    "Service": "/api/v1/namespaces/monitoring/services",
    "ServiceAccount": "/api/v1/namespaces/monitoring/serviceaccounts",
    "ConfigMap": "/api/v1/namespaces/monitoring/configmaps",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "Endpoints": "/api/v1/namespaces/monitoring/endpoints",
}


def chart_objects(cluster: Cluster) -> dict[str, list[str]]:
    left: dict[str, list[str]] = {}
    for kind, path in CHART_KINDS.items():
        status, body = cluster.request("GET", f"{path}?labelSelector={SELECTOR}")
        assert status == 200, body
        names = [item["metadata"]["name"] for item in body["items"]]
        if names:
            left[kind] = names
    return left


def test_helm_uninstall_leaves_no_object_of_the_chart(node: Node) -> None:
    assert "Deployment" in chart_objects(node.cluster)
    helm(node.cluster, "uninstall", RELEASE, "--namespace", "monitoring", "--wait")
    node.wait(lambda: chart_objects(node.cluster) == {}, "every object of the release gone")
    status, body = node.cluster.request(
        "GET", "/api/v1/namespaces/monitoring/secrets?labelSelector=owner=helm"
    )
    assert status == 200 and body["items"] == [], body


# -- sharded StatefulSet -----------------------------------------------------------------------


def test_two_shards_each_serve_their_vmis_and_sum_to_the_cluster(
    node: Node, fleet: Fleet, reference: ExporterProcess
) -> None:
    namespace = restricted_namespace(node.cluster, "sharded")
    helm(
        node.cluster,
        "install", RELEASE, str(CHART), "--namespace", namespace,
        *[arg for value in IMAGE_VALUES for arg in ("--set", value)],
        "--set", "sharding.enabled=true", "--set", "sharding.replicas=2",
    )  # fmt: skip
    try:
        pods = node.ready_pods(namespace, SELECTOR, 2)
        expected = fleet_series(reference.scrape())

        def vmi_names(samples: Samples) -> set[tuple[str, str]]:
            return {
                (dict(k[1])["namespace"], dict(k[1])["name"])
                for k in samples
                if k[0] == "kubevirt_update_vmi_outdated"
            }

        def partitioned() -> bool:
            shards = [fleet_series(scrape(pod)) for pod in pods]
            names = [vmi_names(shard) for shard in shards]
            assert names[0] and names[1] and not names[0] & names[1], names
            assert names[0] | names[1] == vmi_names(expected)
            for family in ("kubevirt_update_outdated_vmis", "kubevirt_update_vmis"):
                total: dict[Any, float] = {}
                for shard in shards:
                    for key, value in shard.items():
                        if key[0] == family:
                            total[key] = total.get(key, 0.0) + value
                assert total == {k: v for k, v in expected.items() if k[0] == family}, family
            return True

        eventually(partitioned, timeout=120, what="two shards partitioning the fleet")
    finally:
        helm(node.cluster, "uninstall", RELEASE, "--namespace", namespace, "--wait")


# -- sidecar -----------------------------------------------------------------------------------


def test_the_sidecar_container_serves_beside_a_main_container(
    node: Node, reference: ExporterProcess
) -> None:
    namespace = restricted_namespace(node.cluster, "sidecar")
    account = "host-app"
    status, body = node.cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
    )
    assert status == 201, body
    helm(
        node.cluster,
        "install", "kue-sidecar", str(CHART), "--namespace", namespace,
        *[arg for value in IMAGE_VALUES for arg in ("--set", value)],
        "--set", "mode=sidecar",
        "--set", f"sidecar.serviceAccount.name={account}",
        "--set", f"sidecar.serviceAccount.namespace={namespace}",
    )  # fmt: skip
    try:
        status, configmap = node.cluster.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/configmaps/kue-sidecar-kubevirt-update-exporter-sidecar",
        )
        assert status == 200, configmap
        # One item of a pod's `containers` list, as the chart documents it.
        (sidecar,) = yaml.safe_load(configmap["data"]["container.yaml"])
        volumes = yaml.safe_load(configmap["data"].get("volumes.yaml", "[]")) or []
        restricted = {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "host-app", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "host-app"}},
                "template": {
                    "metadata": {"labels": {"app": "host-app"}},
                    "spec": {
                        "serviceAccountName": account,
                        "containers": [
                            {
                                "name": "main",
                                "image": PAUSE_IMAGE,
                                "imagePullPolicy": "Never",
                                "securityContext": {**restricted, "runAsUser": 65535},
                            },
                            sidecar,
                        ],
                        "volumes": volumes,
                    },
                },
            },
        }
        status, body = node.cluster.request(
            "POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment
        )
        assert status == 201, body.get("message", body)
        try:
            (pod,) = node.ready_pods(namespace, "app=host-app", 1)
        except Exception as err:
            raise AssertionError(f"{err}\n{node.describe(namespace)}") from err
        port = int(sidecar["ports"][0]["containerPort"])
        eventually(lambda: agrees(pod, reference, port), timeout=120, what="the sidecar agrees")
    finally:
        node.cluster.request("DELETE", f"/apis/apps/v1/namespaces/{namespace}/deployments/host-app")
        helm(node.cluster, "uninstall", "kue-sidecar", "--namespace", namespace, "--wait")


# -- token rotation (last: the short-lived token aged while the tests above ran) ----------------


def counted(samples: Samples, family: str, **labels: str) -> float:
    """The sum of `family`'s series whose labels include `labels`."""
    return sum(select(samples, family, **labels).values())


def vmi_names(samples: Samples) -> set[tuple[str, str]]:
    """(namespace, name) of every VMI the per-VMI family lists."""
    return {
        (dict(key[1])["namespace"], dict(key[1])["name"])
        for key in samples
        if key[0] == "kubevirt_update_vmi_outdated"
    }


def test_the_exporter_keeps_listing_and_watching_after_its_first_token_expired(
    node: Node, fleet: Fleet, reference: ExporterProcess, short_token: ShortToken
) -> None:
    started = time.monotonic()
    cluster = node.cluster
    pod = short_token.pod
    token_file = node.projected_file(pod, TOKEN_VOLUME, "token")
    first = jwt_claims(short_token.first_token)
    rejected_at = first["exp"] + JWT_LEEWAY

    # 1. The kubelet wrote a new token (at 80 % of the lifetime) and the first one is refused.
    def rotated_and_expired() -> bool:
        current = token_file.read_text()
        if current == short_token.first_token:
            return False
        status, _ = cluster.request(
            "GET", "/apis/kubevirt.io/v1/virtualmachineinstances", token=short_token.first_token
        )
        return status == 401

    node.wait(
        rotated_and_expired,
        "a new token in the pod's volume and the first one refused (401)",
        timeout=max(rejected_at - time.time(), 0) + 240,
    )
    renewed = token_file.read_text()
    assert jwt_claims(renewed)["iat"] > first["iat"]
    status, body = cluster.request(
        "GET", "/apis/kubevirt.io/v1/virtualmachineinstances", token=renewed
    )
    assert status == 200, body
    waited = time.monotonic() - started

    # 2. Every watch breaks: whatever the exporter sends from now on carries the token it holds.
    before = scrape(pod)
    node.restart_apiserver()

    # 3. The fleet changes; only fresh lists and watches can tell the pod.
    apps = fleet.namespaces[0]
    late = builders.vmi(
        "late-0", apps, launcher_image=builders.OLD_IMAGE, outdated_label=True, node=NODE_NAME
    )
    create_fleet_objects(cluster, [builders.vm("late-0", apps), late])
    status, body = cluster.request(
        "DELETE", f"/apis/kubevirt.io/v1/namespaces/{apps}/virtualmachineinstances/web-7"
    )
    assert status == 200, body
    changed = {(apps, "late-0")}

    def pod_log_problems() -> list[str]:
        log = node.container_log(pod, "kubevirt-update-exporter")
        return [line for line in log.splitlines() if "HTTP 401" in line or "Unauthorized" in line]

    def converged() -> bool:
        expected = fleet_series(reference.scrape())
        names = vmi_names(expected)
        assert changed <= names and (apps, "web-7") not in names, "the reference lags"
        served = fleet_series(scrape(pod))
        differ = set(served.items()) ^ set(expected.items())
        assert not differ, (
            f"the pod differs from the reference in {len(differ)} series; "
            f"its log's 401 lines: {pod_log_problems()[-3:]}"
        )
        return True

    eventually(converged, timeout=180, what="the pod's /metrics showing the fleet change")

    # 4. One more change, after the pod caught up: it must come through a watch event.
    events = scrape(pod)
    late = builders.vmi(
        "late-1", apps, launcher_image=builders.OLD_IMAGE, outdated_label=True, node=NODE_NAME
    )
    create_fleet_objects(cluster, [builders.vm("late-1", apps), late])
    changed.add((apps, "late-1"))
    eventually(converged, timeout=180, what="the pod's /metrics showing the second change")
    after = scrape(pod)
    added = "kubevirt_update_exporter_watch_events_total"
    assert counted(after, added, resource="virtualmachineinstances", type="ADDED") > counted(
        events, added, resource="virtualmachineinstances", type="ADDED"
    ), "the new VMI did not come through the VMI watch"

    # The same pod, never restarted, Ready, and not one request refused as unauthenticated.
    (now,) = node.ready_pods(TOKEN_NAMESPACE, TOKEN_SELECTOR, 1)
    assert now["metadata"]["uid"] == pod["metadata"]["uid"]
    (status_of,) = now["status"]["containerStatuses"]
    assert status_of["restartCount"] == 0, status_of
    assert pod_log_problems() == []
    # The restart ended every watch; each kind's watch is accepted (200, counted `success` when
    # the API server answers the request) again since: with the token the pod holds now. A kind
    # whose first retry met the restarted server's 403s (below) may still be in its backoff (at
    # most 30 s) when the VMIs have caught up, so this is waited for.
    watches = "kubevirt_update_exporter_watch_total"
    kinds = ("virtualmachineinstances", "virtualmachines", "virtualmachineinstancemigrations",
             "kubevirts")  # fmt: skip

    def watching_again() -> bool:
        now = scrape(pod)
        waiting = [
            resource
            for resource in kinds
            if counted(now, watches, resource=resource, result="success")
            <= counted(before, watches, resource=resource, result="success")
        ]
        assert not waiting, f"no watch accepted since the restart for {waiting}"
        return True

    eventually(watching_again, timeout=200, what="every kind's watch accepted again")
    assert pod_log_problems() == []
    # A freshly started API server may refuse (403) requests until its RBAC caches are filled:
    # those are retried like any failure and are not the token's doing (that would be 401).
    forbidden = [
        line
        for line in node.container_log(pod, "kubevirt-update-exporter").splitlines()
        if '"forbidden"' in line
    ]
    lists = "kubevirt_update_exporter_list_total"
    print(
        f"\ntoken rotation: waited {waited:.0f}s for the first token to expire, "
        f"{time.monotonic() - started:.0f}s in all; list successes "
        f"{counted(before, lists, result='success'):.0f} -> "
        f"{counted(after, lists, result='success'):.0f}; forbidden answers after the restart: "
        f"{len(forbidden)} {forbidden[:1]}"
    )

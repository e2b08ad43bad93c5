"""The Helm chart renders least-privilege, hardened manifests for every supported scenario.

Every test runs the real, pinned `helm` (scripts/install-tools installs it when missing; without
it these tests fail, they never skip) and asserts on the parsed objects.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter import __version__
from exporter.settings import parse_settings
from exporter.web import SHUTDOWN_TIMEOUT
from tests.chart import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    REPO,
    ChartError,
    Obj,
    ci_values,
    helm,
    of_kind,
    one,
    render,
    template_args,
)
from tests.tls import write_tls_pair

FOUR_KINDS = {
    "virtualmachineinstances",
    "virtualmachines",
    "virtualmachineinstancemigrations",
    "kubevirts",
}
NAMESPACED_KINDS = FOUR_KINDS - {"kubevirts"}
READ_VERBS = ["get", "list", "watch"]
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}
SCENARIOS = [path.name.removesuffix("-values.yaml") for path in CI_VALUES]
RULES_SOURCE = REPO / "alerts" / "kubevirt-update-exporter.rules.yaml"
DASHBOARD_SOURCE = REPO / "dashboards" / "kubevirt-update-exporter.json"
SIDECAR_EXAMPLE = REPO / "examples" / "sidecar"


def scenario(name: str) -> list[Obj]:
    """The objects of ci/<name>-values.yaml."""
    return render([ci_values(name)])


def workload(objects: list[Obj]) -> Obj:
    """The exporter's Deployment or StatefulSet."""
    found = [obj for obj in objects if obj["kind"] in WORKLOAD_KINDS]
    assert len(found) == 1, f"expected one workload, got {[o['kind'] for o in found]}"
    return found[0]


def exporter_container(objects: list[Obj]) -> Obj:
    """The exporter container of the workload's pod template."""
    containers = workload(objects)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["kubevirt-update-exporter"]
    container: Obj = containers[0]
    return container


def sidecar_data(objects: list[Obj]) -> dict[str, Any]:
    """The sidecar ConfigMap's data, each key parsed as YAML."""
    configmap = one(objects, "ConfigMap")
    assert configmap["metadata"]["name"].endswith("-sidecar")
    return {key: yaml.safe_load(text) for key, text in configmap["data"].items()}


def flag_values(args: list[str], flag: str) -> list[str]:
    """The values given to `--flag=value` arguments, in order."""
    return [arg.split("=", 1)[1] for arg in args if arg.startswith(f"{flag}=")]


def rbac_rules(objects: list[Obj]) -> list[tuple[Obj, Obj]]:
    """(role, rule) for every rule of every Role and ClusterRole."""
    return [
        (role, rule)
        for role in objects
        if role["kind"] in {"Role", "ClusterRole"}
        for rule in role["rules"]
    ]


def assert_hardened(container: Obj) -> None:
    """The container runs as nobody, read-only, without privileges or capabilities."""
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 65534
    assert ctx["runAsGroup"] == 65534
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in ctx or ctx["privileged"] is False


# -- every scenario ------------------------------------------------------------------------


def test_every_documented_scenario_has_a_ci_values_file() -> None:
    assert set(SCENARIOS) >= {
        "default",
        "namespaced",
        "sidecar",
        "monitoring",
        "networkpolicy",
        "tls-bearer",
        "sharded",
        "short-token",
    }


@pytest.mark.parametrize("name", SCENARIOS)
def test_helm_lint_strict_passes(name: str) -> None:
    proc = helm("lint", "--strict", str(CHART), "--values", str(ci_values(name)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # helm lint reports a template's `fail` as INFO only; rendering must succeed too.
    assert "Fail:" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_renders_named_labelled_objects(name: str) -> None:
    objects = scenario(name)
    assert objects
    for obj in objects:
        meta = obj["metadata"]
        assert obj["apiVersion"] and obj["kind"] and meta["name"]
        assert meta["labels"]["app.kubernetes.io/part-of"] == "kubevirt-update-exporter"
        assert len(meta["name"]) <= 63


@pytest.mark.parametrize("name", SCENARIOS)
def test_rbac_is_read_only_on_exactly_the_four_kubevirt_kinds(name: str) -> None:
    objects = scenario(name)
    rules = rbac_rules(objects)
    assert rules, "the chart must grant the exporter its permissions"
    granted: set[str] = set()
    for role, rule in rules:
        where = f"{role['kind']} {role['metadata']['name']}"
        assert rule["apiGroups"] == ["kubevirt.io"], where
        assert sorted(rule["verbs"]) == READ_VERBS, where
        assert set(rule) == {"apiGroups", "resources", "verbs"}, where
        assert set(rule["resources"]) <= FOUR_KINDS, where
        granted |= set(rule["resources"])
    assert granted == FOUR_KINDS
    assert not [o for o in objects if o["kind"] == "Secret"]


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n != "sidecar"])
def test_pod_and_container_security_contexts_are_hardened(name: str) -> None:
    objects = scenario(name)
    pod = workload(objects)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65534
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod.get("hostNetwork", False) is False
    assert_hardened(exporter_container(objects))


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n != "sidecar"])
def test_liveness_is_healthz_and_readiness_is_readyz_on_the_metrics_port(name: str) -> None:
    container = exporter_container(scenario(name))
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"
    assert [p["name"] for p in container["ports"]] == ["metrics"]


# -- the default install -------------------------------------------------------------------


def test_default_values_render_a_deployment_with_its_service_account_rbac_and_service() -> None:
    objects = scenario("default")
    assert sorted(o["kind"] for o in objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
    ]


def test_default_args_serve_on_the_listen_port_with_json_logs() -> None:
    objects = scenario("default")
    container = exporter_container(objects)
    args = container["args"]
    assert args[0] == "serve"
    assert flag_values(args, "--listen") == ["0.0.0.0:8080"]
    assert flag_values(args, "--log-format") == ["json"]
    assert container["ports"][0]["containerPort"] == 8080
    assert not flag_values(args, "--namespace")
    service_port = one(objects, "Service")["spec"]["ports"][0]
    assert service_port["targetPort"] == "metrics"


def test_default_resources_request_cpu_and_memory_and_limit_memory_only() -> None:
    resources = exporter_container(scenario("default"))["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"memory"}


def test_service_selects_the_pods_of_the_workload() -> None:
    objects = scenario("default")
    selector = one(objects, "Service")["spec"]["selector"]
    labels = workload(objects)["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert workload(objects)["spec"]["selector"]["matchLabels"] == selector


# -- scoping -------------------------------------------------------------------------------


def test_namespaced_scope_grants_kubevirts_cluster_wide_and_the_rest_per_namespace() -> None:
    objects = scenario("namespaced")
    cluster_rule = one(objects, "ClusterRole")["rules"]
    assert [set(rule["resources"]) for rule in cluster_rule] == [{"kubevirts"}]
    roles = of_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["tenant-a", "tenant-b"]
    for role in roles:
        assert [set(rule["resources"]) for rule in role["rules"]] == [NAMESPACED_KINDS]
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["tenant-a", "tenant-b"]
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]


def test_scope_values_become_exporter_flags() -> None:
    args = exporter_container(scenario("namespaced"))["args"]
    assert flag_values(args, "--namespace") == ["tenant-a", "tenant-b"]
    assert flag_values(args, "--label-selector") == ["tier=prod,kubevirt.io/domain"]
    assert flag_values(args, "--metric-denylist") == ["kubevirt_update_vmi_info"]
    assert not flag_values(args, "--metric-allowlist")


def test_extra_args_are_appended_verbatim() -> None:
    args = exporter_container(render(sets=["extraArgs[0]=--log-level=debug"]))["args"]
    assert args[-1] == "--log-level=debug"


# -- TLS and the bearer token ---------------------------------------------------------------


def test_tls_and_bearer_token_come_from_secret_volumes_passed_as_files() -> None:
    objects = scenario("tls-bearer")
    pod = workload(objects)["spec"]["template"]["spec"]
    container = exporter_container(objects)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v["secret"] for v in pod["volumes"]}
    assert volumes["kubevirt-update-exporter-tls"]["secretName"] == "kubevirt-update-exporter-tls"
    assert volumes["kubevirt-update-exporter-token"]["secretName"] == (
        "kubevirt-update-exporter-token"
    )
    assert all(m["readOnly"] for m in container["volumeMounts"])
    args = container["args"]
    tls_dir = mounts["kubevirt-update-exporter-tls"]
    assert flag_values(args, "--tls-cert-file") == [f"{tls_dir}/tls.crt"]
    assert flag_values(args, "--tls-key-file") == [f"{tls_dir}/tls.key"]
    token_dir = mounts["kubevirt-update-exporter-token"]
    assert flag_values(args, "--bearer-token-file") == [f"{token_dir}/token"]
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_servicemonitor_scrapes_https_with_the_bearer_token_secret() -> None:
    endpoint = one(scenario("tls-bearer"), "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "kubevirt-update-exporter-token", "key": "token"},
    }
    assert endpoint["tlsConfig"]["serverName"] == "kubevirt-update-exporter.monitoring.svc"


# -- monitoring objects -----------------------------------------------------------------------


def test_servicemonitor_honors_labels_and_names_the_job_as_the_alerts_expect() -> None:
    objects = scenario("monitoring")
    monitor = one(objects, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    # Without honorLabels our VMI `namespace` label would become `exported_namespace`.
    assert endpoint["honorLabels"] is True
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service_labels = one(objects, "Service")["metadata"]["labels"]
    assert service_labels[monitor["spec"]["jobLabel"]] == "kubevirt-update-exporter"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()


def test_prometheusrule_groups_equal_the_alerts_file() -> None:
    rule = one(scenario("monitoring"), "PrometheusRule")
    source = yaml.safe_load(RULES_SOURCE.read_text())
    assert rule["spec"]["groups"] == source["groups"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheusrule_runbook_urls_follow_the_runbook_base_url_value() -> None:
    def urls(sets: list[str]) -> dict[str, str]:
        rule = one(render(sets=["prometheusRule.enabled=true", *sets]), "PrometheusRule")
        return {
            r["alert"]: r["annotations"]["runbook_url"]
            for g in rule["spec"]["groups"]
            for r in g["rules"]
            if "alert" in r
        }

    default = urls([])
    assert default["KubevirtUpdateExporterDown"] == "docs/runbooks/KubevirtUpdateExporterDown.md"
    base = "https://git.internal.test/ops/kue/docs/runbooks/"
    published = urls([f"prometheusRule.runbookBaseURL={base}"])
    for name, url in published.items():
        if name == "OutdatedVirtualMachineInstanceWorkloads":
            assert url == "https://kubevirt.io/monitoring/runbooks/" + name
        else:
            assert url == f"{base}{name}.md"
    with pytest.raises(ChartError, match="runbookBaseURL"):
        render(sets=["prometheusRule.enabled=true", "prometheusRule.runbookBaseURL=not a url"])


def test_dashboard_configmap_holds_the_dashboard_for_the_grafana_sidecar() -> None:
    configmap = one(scenario("monitoring"), "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "KubeVirt"}
    (text,) = configmap["data"].values()
    assert json.loads(text) == json.loads(DASHBOARD_SOURCE.read_text())


def test_chart_copies_of_the_rules_and_the_dashboard_are_identical_to_the_sources() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "sync_chart_files.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {o["kind"] for o in scenario("default")}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy"}


# -- network policy ---------------------------------------------------------------------------


def test_networkpolicy_admits_scrapes_on_the_metrics_port_and_egress_to_the_api_server_only() -> (
    None
):
    objects = scenario("networkpolicy")
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == one(objects, "Service")["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert ingress["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    (egress,) = policy["egress"]
    assert "to" not in egress
    assert egress["ports"] == [
        {"port": 443, "protocol": "TCP"},
        {"port": 6443, "protocol": "TCP"},
    ]


# -- sidecar mode -----------------------------------------------------------------------------


def test_sidecar_mode_renders_no_workload_and_binds_the_host_pods_service_account() -> None:
    objects = scenario("sidecar")
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap"]
    binding = one(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}
    ]


def test_sidecar_container_is_hardened_listens_on_its_port_and_has_no_readiness_probe() -> None:
    data = sidecar_data(scenario("sidecar"))
    (container,) = data["container.yaml"]
    assert_hardened(container)
    assert flag_values(container["args"], "--listen") == ["0.0.0.0:9595"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9595, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # An unready exporter must not take the host pod (e.g. Prometheus) out of its Service.
    assert "readinessProbe" not in container
    assert data["patch.yaml"]["spec"]["template"]["spec"]["containers"] == [container]


def test_sidecar_patch_brings_the_secret_volumes_its_container_mounts() -> None:
    objects = render(
        [ci_values("sidecar")],
        sets=["bearerToken.enabled=true", "bearerToken.secretName=scrape-token"],
    )
    data = sidecar_data(objects)
    (container,) = data["container.yaml"]
    (volume,) = data["volumes.yaml"]
    assert [m["name"] for m in container["volumeMounts"]] == [volume["name"]]
    assert volume["secret"]["secretName"] == "scrape-token"
    assert data["patch.yaml"]["spec"]["template"]["spec"]["volumes"] == [volume]


def test_sidecar_in_scoped_namespaces_binds_roles_to_the_host_service_account() -> None:
    objects = render(
        [ci_values("sidecar")], sets=["namespaces[0]=tenant-a", "sidecar.serviceAccount.namespace="]
    )
    (binding,) = of_kind(objects, "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": NAMESPACE}
    ]


def test_sidecar_example_patch_carries_the_container_the_chart_renders() -> None:
    objects = render([SIDECAR_EXAMPLE / "values.yaml"])
    (container,) = sidecar_data(objects)["container.yaml"]
    patch = yaml.safe_load((SIDECAR_EXAMPLE / "prometheus-patch.yaml").read_text())
    assert patch["spec"]["containers"] == [container]
    binding = one(objects, "ClusterRoleBinding")
    assert binding["subjects"][0]["name"] == "prometheus-k8s"
    scrape = yaml.safe_load((SIDECAR_EXAMPLE / "scrape-config.yaml").read_text())
    (job,) = scrape
    port = container["ports"][0]["containerPort"]
    assert job["job_name"] == "kubevirt-update-exporter"
    assert job["honor_labels"] is True
    assert job["static_configs"] == [{"targets": [f"localhost:{port}"]}]


# -- the ServiceAccount token ----------------------------------------------------------------

#: Where in-cluster clients read the token, the CA and the namespace (kubernetes_asyncio and
#: client-go alike); the ServiceAccount admission plugin mounts its volume there.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def token_volumes(pod: Obj) -> list[Obj]:
    """The pod's volumes that project a ServiceAccount token."""
    return [
        volume
        for volume in pod.get("volumes", [])
        if any(
            "serviceAccountToken" in source
            for source in volume.get("projected", {}).get("sources", [])
        )
    ]


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n not in ("sidecar", "short-token")])
def test_by_default_the_pod_automounts_its_token_and_projects_none_itself(name: str) -> None:
    pod = workload(scenario(name))["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert token_volumes(pod) == []
    mounts = exporter_container(scenario(name)).get("volumeMounts", [])
    assert SERVICE_ACCOUNT_DIR not in [m["mountPath"] for m in mounts]


@pytest.mark.parametrize(
    "sets",
    [
        ["serviceAccount.tokenExpirationSeconds=600"],
        ["serviceAccount.tokenExpirationSeconds=3600", "sharding.enabled=true"],
    ],
    ids=["deployment", "sharded"],
)
def test_a_token_lifetime_mounts_what_the_admission_plugin_injects_with_that_lifetime(
    sets: list[str],
) -> None:
    objects = render(sets=sets)
    expiration = int(sets[0].split("=")[1])
    pod = workload(objects)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (volume,) = token_volumes(pod)
    # plugin/pkg/admission/serviceaccount TokenVolumeSource: token, kube-root-ca.crt, namespace.
    assert volume["projected"] == {
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": expiration}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }
    container = exporter_container(objects)
    assert {
        "name": volume["name"],
        "mountPath": SERVICE_ACCOUNT_DIR,
        "readOnly": True,
    } in container["volumeMounts"]
    assert len(pod["volumes"]) == 1


def test_a_token_lifetime_keeps_the_secret_volumes_beside_it() -> None:
    objects = render(
        [ci_values("tls-bearer")], sets=["serviceAccount.tokenExpirationSeconds=86400"]
    )
    pod = workload(objects)["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in exporter_container(objects)["volumeMounts"]}
    assert len(mounts) == 3 and SERVICE_ACCOUNT_DIR in mounts
    assert sorted(mounts.values()) == sorted(v["name"] for v in pod["volumes"])


def test_sidecar_mode_refuses_a_token_lifetime_even_without_the_schema() -> None:
    sets = [
        "mode=sidecar",
        "sidecar.serviceAccount.name=p",
        "serviceAccount.tokenExpirationSeconds=600",
    ]
    proc = helm(*template_args(sets=sets), "--skip-schema-validation")
    assert proc.returncode != 0, proc.stdout
    assert "serviceAccount.tokenExpirationSeconds" in proc.stderr
    assert "host pod owns the ServiceAccount token" in proc.stderr


# -- sharded mode -----------------------------------------------------------------------------


def test_sharded_mode_runs_a_statefulset_whose_pods_take_their_shard_from_the_ordinal() -> None:
    objects = scenario("sharded")
    statefulset = one(objects, "StatefulSet")
    assert not of_kind(objects, "Deployment")
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["serviceName"] == one(objects, "Service")["metadata"]["name"]
    container = exporter_container(objects)
    assert flag_values(container["args"], "--total-shards") == ["3"]
    assert container["env"] == [
        {
            "name": "KUBEVIRT_UPDATE_EXPORTER_SHARD",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
            },
        }
    ]


# -- values and their schema --------------------------------------------------------------------


BAD_VALUES = [
    pytest.param(["mode=daemonset"], "mode", id="mode-not-an-enum-value"),
    pytest.param(["port=0"], "port", id="port-zero"),
    pytest.param(["port=70000"], "port", id="port-above-65535"),
    pytest.param(["sidecar.port=-1"], "port", id="sidecar-port-negative"),
    pytest.param(["service.port=65536"], "port", id="service-port-above-65535"),
    pytest.param(["replicas=2"], "replicas", id="unsharded-replicas-duplicate-series"),
    pytest.param(["log.format=xml"], "format", id="log-format-not-json-or-console"),
    pytest.param(["image.pullPolicy=Sometimes"], "pullPolicy", id="pull-policy"),
    pytest.param(["unknownValue=1"], "unknownValue", id="unknown-top-level-key"),
    pytest.param(["image.tga=v1"], "tga", id="typo-in-a-nested-key"),
    pytest.param(["namespaces[0]=Bad_NS"], "namespaces", id="namespace-not-a-dns-label"),
    pytest.param(["sharding.replicas=0"], "replicas", id="zero-shards"),
    pytest.param(["mode=sidecar"], "name", id="sidecar-without-host-service-account"),
    pytest.param(
        ["mode=sidecar", "sidecar.serviceAccount.name=p", "sharding.enabled=true"],
        "enabled",
        id="sidecar-cannot-shard",
    ),
    pytest.param(["tls.enabled=true"], "secretName", id="tls-without-secret"),
    pytest.param(["bearerToken.enabled=true"], "secretName", id="bearer-token-without-secret"),
    pytest.param(
        ["metricAllowlist[0]=a", "metricDenylist[0]=b"], "metricDenylist", id="allow-and-deny"
    ),
    pytest.param(["serviceMonitor.interval=often"], "interval", id="interval-not-a-duration"),
    pytest.param(["image.digest=latest"], "digest", id="digest-not-sha256"),
    pytest.param(
        ["serviceAccount.tokenExpirationSeconds=599"],
        "tokenExpirationSeconds",
        id="token-lifetime-below-the-api-minimum",
    ),
    pytest.param(
        ["serviceAccount.tokenExpirationSeconds=4294967297"],
        "tokenExpirationSeconds",
        id="token-lifetime-above-the-api-maximum",
    ),
    pytest.param(
        ["serviceAccount.tokenExpirationSeconds=10m"],
        "tokenExpirationSeconds",
        id="token-lifetime-not-an-integer",
    ),
    pytest.param(
        [
            "mode=sidecar",
            "sidecar.serviceAccount.name=p",
            "serviceAccount.tokenExpirationSeconds=600",
        ],
        "tokenExpirationSeconds",
        id="sidecar-does-not-own-the-token",
    ),
    pytest.param(
        ["terminationGracePeriodSeconds=10"],
        "terminationGracePeriodSeconds",
        id="grace-period-not-above-the-shutdown-timeout",
    ),
]


@pytest.mark.parametrize(("sets", "named"), BAD_VALUES)
def test_schema_rejects_bad_values_naming_them(sets: list[str], named: str) -> None:
    with pytest.raises(ChartError) as failure:
        render(sets=sets)
    message = str(failure.value)
    assert "schema" in message, message
    assert named in message, message


def test_good_overrides_pass_the_schema() -> None:
    objects = render(
        sets=[
            "replicas=0",
            "image.digest=sha256:" + "0" * 64,
            "listenHost=::",
            "log.format=console",
            "metricAllowlist[0]=kubevirt_update_outdated_vmis",
        ]
    )
    container = exporter_container(objects)
    assert container["image"] == "kubevirt-update-exporter@sha256:" + "0" * 64
    assert flag_values(container["args"], "--listen") == ["[::]:8080"]
    assert flag_values(container["args"], "--metric-allowlist") == ["kubevirt_update_outdated_vmis"]


def schema_leaves(schema: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the values a user sets: properties that are not closed groups of properties."""
    leaves = []
    for key, sub in schema.get("properties", {}).items():
        if "properties" in sub and sub.get("additionalProperties") is False:
            leaves += schema_leaves(sub, (*path, key))
        else:
            leaves.append((*path, key))
    return leaves


def commented_keys(values_text: str) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """(every key path in values.yaml, those with a comment line right above them)."""
    keys: set[tuple[str, ...]] = set()
    commented: set[tuple[str, ...]] = set()
    stack: list[tuple[int, str]] = []
    previous = ""
    for line in values_text.splitlines():
        match = re.match(r"^( *)([A-Za-z_][\w]*):", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            path = tuple(name for _, name in stack)
            keys.add(path)
            if previous.lstrip().startswith("#"):
                commented.add(path)
        if line.strip():
            previous = line
    return keys, commented


def test_every_value_is_commented_and_described_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    keys, commented = commented_keys((CHART / "values.yaml").read_text())
    leaves = [leaf for leaf in schema_leaves(schema) if leaf != ("global",)]
    assert set(leaves) <= keys, "schema properties missing from values.yaml"
    assert not [leaf for leaf in leaves if leaf not in commented], "values without a comment"


def test_schema_closes_every_group_of_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def open_groups(node: dict[str, Any], path: str) -> list[str]:
        found = (
            [path] if "properties" in node and node.get("additionalProperties") is not False else []
        )
        for key, sub in node.get("properties", {}).items():
            found += open_groups(sub, f"{path}.{key}")
        return found

    assert open_groups(schema, "values") == []


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__, "run python scripts/sync_version.py"


def test_rendering_needs_no_cluster_and_no_file_outside_the_chart(tmp_path: Path) -> None:
    # A packaged chart carries its files/ copies: render the package, not the directory.
    proc = helm("package", str(CHART), "--destination", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (package,) = tmp_path.glob("kubevirt-update-exporter-*.tgz")
    rendered = helm("template", "kue", str(package), "--values", str(ci_values("monitoring")))
    assert rendered.returncode == 0, rendered.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered.stdout) if doc}
    assert {"PrometheusRule", "ConfigMap"} <= kinds


# -- the rendered container against the exporter's own flag parser ------------------------------


def pod_env(container: Obj, pod_index: str) -> dict[str, str]:
    """The container's environment as the kubelet resolves it for the pod with `pod_index`."""
    env = {}
    for var in container.get("env", []):
        field = var["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "metadata.labels['apps.kubernetes.io/pod-index']", field
        env[var["name"]] = pod_index
    return env


def mounted_secrets(container: Obj, tmp_path: Path) -> list[str]:
    """The container's args with the Secret mount paths moved under tmp_path, files written."""
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    args = []
    for arg in container["args"]:
        for mount in mounts:
            if f"={mount}/" in arg:
                arg = arg.replace(f"={mount}/", f"={tmp_path}{mount}/")
        args.append(arg)
    for mount in mounts:
        (tmp_path / mount.lstrip("/")).mkdir(parents=True)
    tls_dir = next((m for m in mounts if m.endswith("/tls")), None)
    if tls_dir:
        cert, key = write_tls_pair(tmp_path / tls_dir.lstrip("/"))
        cert.rename(cert.with_name("tls.crt"))
        key.rename(key.with_name("tls.key"))
    for token_dir in (m for m in mounts if m.endswith("/token")):
        (tmp_path / token_dir.lstrip("/") / "token").write_text("s3cret\n")
    return args


def rendered_containers(name: str) -> list[Obj]:
    objects = scenario(name)
    if name == "sidecar":
        containers: list[Obj] = sidecar_data(objects)["container.yaml"]
        return containers
    return [exporter_container(objects)]


@pytest.mark.parametrize("name", SCENARIOS)
def test_rendered_args_and_env_are_valid_exporter_settings(name: str, tmp_path: Path) -> None:
    (container,) = rendered_containers(name)
    args = mounted_secrets(container, tmp_path)
    assert args[0] == "serve"
    settings = parse_settings(args[1:], pod_env(container, "2"))
    assert settings.listen_port == container["ports"][0]["containerPort"]
    assert settings.log_format == "json"
    if name == "sharded":
        assert (settings.shard, settings.total_shards) == (2, 3)
    if name == "namespaced":
        assert settings.namespaces == ("tenant-a", "tenant-b")
    if name == "tls-bearer":
        assert settings.tls_cert_file is not None
        assert settings.bearer_token_file is not None


@pytest.mark.parametrize("sets", [[], ["sharding.enabled=true", "sharding.replicas=2"]])
def test_the_pod_outlives_the_exporters_shutdown_timeout(sets: list[str]) -> None:
    kind = "StatefulSet" if sets else "Deployment"
    pod = one(render(sets=sets), kind)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_TIMEOUT

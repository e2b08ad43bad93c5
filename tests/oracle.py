"""KubeVirt's own code as the test oracle, running against the test cluster.

Contract:
- The oracle binary is built by `scripts/build-upstream` (tools/upstream, kubevirt/kubevirt v1.7.0
  as Go modules); every failure to build or start it raises `OracleError` with its log: tests fail
  loudly, they never skip.
- `Webhook.start(cluster, ...)` serves upstream's pod eviction admitter
  (pkg/virt-api/webhooks/validating-webhook/admitters/pod-eviction-admitter.go) over TLS on
  loopback and registers it as virt-api registers it (upstream's own
  `components.NewVirtAPIValidatingWebhookConfiguration` entry for virt-launcher evictions, with a
  URL in place of the virt-api Service); `verdicts()` are the admitter's answers so far.
- `Updater.start(cluster, ...)` runs upstream's WorkloadUpdateController
  (pkg/virt-controller/watch/workload-updater) with real informers until `stop()`.
- `launcher_pod(vmi)` is the virt-launcher Pod the updater and the admitter look for: controlled by
  the VMI, on its node, labels `kubevirt.io: virt-launcher` and `kubevirt.io/created-by: <uid>`,
  annotation `kubevirt.io/domain: <name>`.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import Cluster, ClusterError, build_oracle, free_port
from tests.exporter_process import end_process

#: How long an oracle process may take to come up on a loaded 2-core machine.
START_TIMEOUT = 60.0
#: The webhook registration's name (upstream's virt-api validating webhook configuration).
WEBHOOK_CONFIGURATION = "virt-api-validator"
#: The oracle's controller may use one core at most: upstream's re-enqueue interval is 30 ns
#: (workload-updater.go `periodicReEnqueueIntervalSeconds` passed as a time.Duration), so it
#: re-syncs in a tight loop while anything is left to evict.
ORACLE_ENV = {"GOMAXPROCS": "1"}

Json = dict[str, Any]

_runs = itertools.count(1)


class OracleError(ClusterError):
    """The oracle binary could not be built, started or registered; the message says which."""


@dataclass
class OracleProcess:
    """One running oracle subcommand with its stdout and stderr files."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @classmethod
    def start(cls, name: str, argv: list[str], workdir: Path) -> OracleProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        # Files of their own: a line of an earlier run must never count as this one's.
        run = next(_runs)
        stdout, stderr = workdir / f"{name}-{run}.out", workdir / f"{name}-{run}.log"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            popen = subprocess.Popen(
                ["nice", "-n", "5", *argv],
                stdout=out,
                stderr=err,
                env={**os.environ, **ORACLE_ENV},
                start_new_session=True,
            )
        return cls(name, popen, stdout, stderr)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        """Raise OracleError with the log tail if the process has exited."""
        if not self.alive():
            raise OracleError(
                f"upstream {self.name} exited ({self.popen.returncode})\n{self.tail()}"
            )

    def wait_for_log(self, text: str, *, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if text in self.stderr.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise OracleError(
            f"upstream {self.name} did not log {text!r} in {timeout:.0f}s\n{self.tail()}"
        )

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (the oracle's clean stop), then SIGKILL after `timeout`; the exit code."""
        return end_process(self.popen, timeout)

    def tail(self, lines: int = 40) -> str:
        """The last lines of both outputs (upstream's own logger writes to stdout)."""
        shown = []
        for path in (self.stdout, self.stderr):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            shown.append(f"--- upstream {self.name} ({path}) ---\n" + "\n".join(text))
        return "\n".join(shown)


@dataclass(frozen=True)
class Verdict:
    """One answer of upstream's eviction admitter."""

    namespace: str
    pod: str
    allowed: bool
    message: str


@dataclass
class Webhook:
    """Upstream's eviction admitter, served on loopback and registered with the API server."""

    process: OracleProcess
    url: str

    @classmethod
    def start(cls, cluster: Cluster, workdir: Path, *, kubevirt_namespace: str) -> Webhook:
        binary = build_oracle()
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        process = OracleProcess.start(
            "webhook",
            [
                str(binary),
                "webhook",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--listen",
                f"127.0.0.1:{port}",
                # The test CA's serving certificate is valid for 127.0.0.1.
                "--cert",
                str(cluster.pki.serving_cert),
                "--key",
                str(cluster.pki.serving_key),
                "--kubevirt-namespace",
                kubevirt_namespace,
            ],
            workdir,
        )
        webhook = cls(process, url)
        try:
            process.wait_for_log("serving")
            webhook.register(cluster, binary)
        except BaseException:
            process.stop()
            raise
        return webhook

    def register(self, cluster: Cluster, binary: Path) -> None:
        proc = subprocess.run(
            [str(binary), "webhook-config", "--url", self.url, "--ca-file", str(cluster.ca_file)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if proc.returncode != 0:
            raise OracleError(f"webhook-config failed ({proc.returncode}):\n{proc.stderr}")
        config = yaml.safe_load(proc.stdout)
        if config["metadata"]["name"] != WEBHOOK_CONFIGURATION:
            raise OracleError(f"unexpected webhook configuration {config['metadata']['name']}")
        path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
        status, body = cluster.request("POST", path, config)
        if status != 201:
            raise OracleError(f"registering upstream's eviction webhook: {status} {body}")

    @staticmethod
    def unregister(cluster: Cluster) -> None:
        path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
        cluster.request("DELETE", f"{path}/{WEBHOOK_CONFIGURATION}")

    def verdicts(self) -> list[Verdict]:
        """Every answer so far, in order (dry runs left out)."""
        answers = []
        for line in self.process.stdout.read_text(errors="replace").splitlines():
            raw = json.loads(line)
            if raw.get("dryRun"):
                continue
            answers.append(Verdict(raw["namespace"], raw["pod"], raw["allowed"], raw["message"]))
        return answers


@dataclass
class Updater:
    """Upstream's workload updater for one run; `stop()` ends it."""

    process: OracleProcess

    @classmethod
    def start(
        cls,
        cluster: Cluster,
        workdir: Path,
        *,
        launcher_image: str,
        kubevirt_namespace: str,
        wait: bool = True,
    ) -> Updater:
        """Start it; with `wait=False` the caller calls `wait_running()` (Go's start-up of
        upstream's packages takes seconds, other work can overlap it)."""
        process = OracleProcess.start(
            "updater",
            [
                str(build_oracle()),
                "updater",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--launcher-image",
                launcher_image,
                "--kubevirt-namespace",
                kubevirt_namespace,
            ],
            workdir,
        )
        updater = cls(process)
        if wait:
            updater.wait_running()
        return updater

    def wait_running(self) -> None:
        try:
            self.process.wait_for_log("running")
        except BaseException:
            self.process.stop()
            raise

    def stop(self) -> None:
        self.process.check()
        code = self.process.stop()
        if code != 0:
            raise OracleError(f"upstream updater stopped with {code}\n{self.process.tail()}")


def launcher_pod(vmi: Mapping[str, Any], *, image: str) -> Json:
    """The virt-launcher Pod of a stored VMI (see the module contract)."""
    meta = vmi["metadata"]
    name = meta["name"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"virt-launcher-{name}-x7k2p",
            "namespace": meta["namespace"],
            "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": meta["uid"]},
            "annotations": {"kubevirt.io/domain": name},
            "ownerReferences": [
                {
                    "apiVersion": "kubevirt.io/v1",
                    "kind": "VirtualMachineInstance",
                    "name": name,
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "nodeName": vmi.get("status", {}).get("nodeName", ""),
            "containers": [{"name": "compute", "image": image}],
        },
    }

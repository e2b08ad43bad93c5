"""A real, throwaway Kubernetes control plane for the tests: etcd + kube-apiserver on loopback.

Contract (the way controller-runtime's envtest runs one):
- `Cluster.start(workdir)` builds the binaries when missing (`scripts/build-k8s`, cached per version
  outside the checkout), starts etcd and kube-apiserver on free loopback ports with a throwaway CA,
  RBAC authorization, service-account keys, an admin client certificate in `system:masters` and a
  static token file, waits for `/readyz`, installs KubeVirt's own CRDs for the four kinds (printed
  by the oracle binary, `scripts/build-upstream`, from kubevirt/kubevirt v1.7.0:
  pkg/virt-operator/resource/generate/components/crds.go) and waits until they are served. Any
  failure raises `ClusterError` carrying the tail of both process logs: the run fails loudly, it
  never skips.
- `request()` speaks plain HTTPS to the API server (admin certificate, or a bearer token), so tests
  can create, patch and delete objects without depending on the code under test.
- `restart_apiserver()` / `restart_etcd()` / `compact()` produce real faults on demand; `stop()`
  ends both processes.
"""

from __future__ import annotations

import copy
import datetime
import functools
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
#: The user of `--token-auth-file` that has no bindings until a test gives it some.
RESTRICTED_USER = "restricted"
#: The `kubernetes` Service's cluster IP: the first address of --service-cluster-ip-range.
KUBERNETES_SERVICE_IP = "10.0.0.1"
#: How long the control plane may take to become ready on a loaded 2-core machine.
READY_TIMEOUT = 180.0

Json = dict[str, Any]
#: Kinds whose status is written through the status subresource: upstream's CRDs give every kind
#: but VirtualMachineInstance one (`install_crds` checks that the installed CRDs agree).
STATUS_SUBRESOURCE_KINDS = frozenset(
    {"VirtualMachine", "VirtualMachineInstanceMigration", "KubeVirt"}
)
#: Query that makes the API server refuse unknown or duplicate fields instead of dropping them.
STRICT = "?fieldValidation=Strict"
#: metadata the API server assigns on create (it refuses some of them when sent).
SERVER_OWNED_METADATA = frozenset(
    {"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink"}
)


class ClusterError(RuntimeError):
    """The test control plane could not be built, started or reached; the message says which."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_binaries() -> Path:
    """The directory holding kube-apiserver and etcd, building them first when missing."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-k8s")], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ClusterError(f"scripts/build-k8s failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def build_oracle() -> Path:
    """The oracle binary (KubeVirt's own code, tools/upstream), building it first when missing."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-upstream")], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ClusterError(
            f"scripts/build-upstream failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return Path(proc.stdout.strip().splitlines()[-1])


@functools.cache
def upstream_crds() -> list[Json]:
    """KubeVirt's own CRDs for VMI, VM, VMIM and KubeVirt, as the oracle binary prints them
    (once per test process: the binary takes seconds to initialize upstream's packages)."""
    binary = build_oracle()
    proc = subprocess.run(
        [str(binary), "crds"], capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        raise ClusterError(f"{binary} crds failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # 1.6 MB of YAML: libyaml when present
    crds = [doc for doc in yaml.load_all(proc.stdout, Loader=loader) if doc]
    kinds = {crd["spec"]["names"]["kind"] for crd in crds}
    if kinds != {
        "VirtualMachineInstance",
        "VirtualMachine",
        "VirtualMachineInstanceMigration",
        "KubeVirt",
    }:
        raise ClusterError(f"{binary} crds printed the CRDs of {sorted(kinds)}")
    return crds


@dataclass
class Pki:
    """Throwaway certificates and keys, written as PEM files into `directory`.

    The serving certificate is valid for loopback, `kubernetes.default.svc` and `extra_ips` (a
    node's pods reach the API server at its advertise address or the `kubernetes` Service IP).
    """

    directory: Path
    extra_ips: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "kubevirt-update-exporter-test-ca")]
        )
        self._ca_cert = (
            self._builder(ca_name, ca_name, self._ca_key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._ca_key, hashes.SHA256())
        )
        self._ca_name = ca_name
        self.ca_file = self._write("ca.crt", self._ca_cert.public_bytes(serialization.Encoding.PEM))
        self.serving_cert, self.serving_key = self._leaf(
            "serving",
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            sans=[
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes.default.svc"),
                *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in self.extra_ips),
            ],
        )
        self.admin_cert, self.admin_key = self._leaf(
            "admin",
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
                ]
            ),
        )
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_key = self._write(
            "sa.key",
            sa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        self.sa_pub = self._write(
            "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
        )

    def _leaf(
        self, stem: str, subject: x509.Name, sans: list[x509.GeneralName] | None = None
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(subject, self._ca_name, key)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        return (
            self._write(f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
            self._write(
                f"{stem}.key",
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ),
        )

    def _write(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path


@dataclass
class Process:
    """One control-plane process with its log file."""

    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n=== starting {self.name}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return f"({self.name}: no log)"
        # Kubernetes components print every flag at start: noise next to why they stopped.
        text = [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if "flags.go" not in line
        ][-lines:]
        return f"--- {self.name} log ({self.log}) ---\n" + "\n".join(text)


@dataclass
class Cluster:
    """A running etcd + kube-apiserver pair; see the module docstring."""

    workdir: Path
    binaries: Path
    pki: Pki
    etcd_port: int
    apiserver_port: int
    restricted_token: str
    etcd: Process
    apiserver: Process
    #: The address the API server listens on and advertises (loopback unless a node needs it).
    host: str = "127.0.0.1"
    kubeconfig: Path = field(init=False)
    _ssl: ssl.SSLContext = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.kubeconfig = self.write_kubeconfig(self.workdir / "admin.kubeconfig")
        self._ssl = ssl.create_default_context(cafile=str(self.pki.ca_file))
        self._ssl.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        for_node: bool = False,
        extra_args: Sequence[str] = (),
    ) -> Cluster:
        """Build (if needed) and start a control plane in `workdir`; ready with CRDs installed.

        `for_node` prepares it for a kubelet (tests/node): it listens on and advertises `host`
        (an address on the node's bridge, not loopback), its certificate also names `host` and
        the `kubernetes` Service IP, and the ServiceAccount admission plugin stays on so pods
        get their projected tokens. `extra_args` are appended to the API server's flags.
        """
        binaries = build_binaries()
        workdir.mkdir(parents=True, exist_ok=True)
        pki = Pki(workdir / "pki", extra_ips=(host, KUBERNETES_SERVICE_IP) if for_node else ())
        etcd_port, peer_port, apiserver_port = free_port(), free_port(), free_port()
        token = os.urandom(16).hex()
        tokens = workdir / "tokens.csv"
        tokens.write_text(f'{token},{RESTRICTED_USER},uid-restricted,"test-restricted"\n')
        etcd = Process(
            "etcd",
            [
                str(binaries / "etcd"),
                f"--data-dir={workdir / 'etcd-data'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            workdir / "etcd.log",
        )
        apiserver = Process(
            "kube-apiserver",
            [
                str(binaries / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--secure-port={apiserver_port}",
                f"--bind-address={host}",
                # No default route on these machines: the advertise address must be given.
                f"--advertise-address={host}",
                # A loopback advertise address is refused by the endpoint reconciler; nothing
                # here needs the `kubernetes` Service's endpoints.
                "--endpoint-reconciler-type=none",
                f"--cert-dir={workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_file}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={tokens}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.0.0.0/24",
                # As envtest does: no ServiceAccount admission (no controller-manager makes tokens).
                *([] if for_node else ["--disable-admission-plugins=ServiceAccount"]),
                "--allow-privileged=true",
                "--v=1",
                *extra_args,
            ],
            workdir / "kube-apiserver.log",
        )
        cluster = cls(
            workdir=workdir,
            binaries=binaries,
            pki=pki,
            etcd_port=etcd_port,
            apiserver_port=apiserver_port,
            restricted_token=token,
            etcd=etcd,
            apiserver=apiserver,
            host=host,
        )
        try:
            etcd.start()
            cluster._wait(cluster._etcd_healthy, "etcd /health")
            apiserver.start()
            cluster.wait_ready()
            cluster.install_crds()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        """End both processes (API server first)."""
        self.apiserver.stop()
        self.etcd.stop()

    def restart_apiserver(self, *, down_for: float = 0.0) -> None:
        """Stop the API server (watches break), optionally stay down, start it, wait for ready."""
        self.apiserver.stop()
        time.sleep(down_for)
        self.apiserver.start()
        self.wait_ready()

    def restart_etcd(self, *, down_for: float = 0.0) -> None:
        """Stop etcd under a running API server, optionally stay down, start it, wait for ready."""
        self.etcd.stop()
        time.sleep(down_for)
        self.etcd.start()
        self._wait(self._etcd_healthy, "etcd /health")
        self.wait_ready()

    def compact(self) -> int:
        """Compact etcd at its current revision, so watches resuming from older versions get 410."""
        status, body = self._etcd_call("/v3/kv/range", {"key": "AA==", "limit": 1})
        if status != 200:
            raise ClusterError(f"etcd range failed: {status} {body}")
        revision = int(body["header"]["revision"])
        status, body = self._etcd_call(
            "/v3/kv/compaction", {"revision": revision, "physical": True}
        )
        if status != 200:
            raise ClusterError(f"etcd compaction failed: {status} {body}")
        return revision

    def logs(self) -> str:
        """The tail of both process logs, for failure messages."""
        return self.etcd.tail() + "\n" + self.apiserver.tail()

    # -- readiness -------------------------------------------------------------------------

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll `/readyz` until it answers 200."""
        self._wait(lambda: self._status("/readyz") == 200, "kube-apiserver /readyz", timeout)

    def _wait(self, probe: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in (self.etcd, self.apiserver):
                if proc.popen is not None and not proc.alive():
                    raise ClusterError(
                        f"{proc.name} exited while waiting for {what}\n{self.logs()}"
                    )
            if probe():
                return
            time.sleep(0.25)
        raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")

    def _status(self, path: str) -> int:
        try:
            return self.request("GET", path)[0]
        except (OSError, ClusterError):
            return 0

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.etcd_port}/health", timeout=2
            ) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _etcd_call(self, path: str, body: Json) -> tuple[int, Json]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.etcd_port}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, {"error": err.read().decode(errors="replace")}

    # -- CRDs ------------------------------------------------------------------------------

    def install_crds(self) -> None:
        """Create upstream's four KubeVirt CRDs and wait until each kind is served."""
        crds = copy.deepcopy(upstream_crds())
        with_status = {
            crd["spec"]["names"]["kind"]
            for crd in crds
            if any(
                "status" in version.get("subresources", {}) for version in crd["spec"]["versions"]
            )
        }
        if with_status != STATUS_SUBRESOURCE_KINDS:
            raise ClusterError(
                f"upstream's CRDs give a status subresource to {sorted(with_status)}, "
                f"the harness writes status through it for {sorted(STATUS_SUBRESOURCE_KINDS)}"
            )
        for crd in crds:
            status, body = self.request(
                "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
            )
            if status not in (201, 409):
                raise ClusterError(f"creating CRD {crd['metadata']['name']}: {status} {body}")
        for crd in crds:
            plural: str = crd["spec"]["names"]["plural"]
            self._wait(partial(self._served, plural), f"CRD {plural}.kubevirt.io to be served")

    def _served(self, plural: str) -> bool:
        return self._status(f"/apis/kubevirt.io/v1/{plural}?limit=1") == 200

    # -- clients ---------------------------------------------------------------------------

    @property
    def server(self) -> str:
        """The API server's URL."""
        return f"https://{self.host}:{self.apiserver_port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the serving certificate."""
        return self.pki.ca_file

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        """A kubeconfig for the admin certificate, or for `token` when given."""
        user: Json = (
            {"token": token}
            if token is not None
            else {
                "client-certificate": str(self.pki.admin_cert),
                "client-key": str(self.pki.admin_key),
            }
        )
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": "test-user", "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test-user"}}],
            "current-context": "test",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        content_type: str | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Json]:
        """One HTTPS call; returns (status, decoded JSON body). PATCH defaults to a merge patch.

        429 (a restarted server's CRD storage still initializing, or priority-and-fairness) is
        retried after its Retry-After, and a GET whose response was cut short (a server that was
        just restarted under load) is sent again, for up to a minute.
        """
        deadline = time.monotonic() + 60.0
        while True:
            try:
                status, answer, retry_after = self._request_once(
                    method,
                    path,
                    body_in=body,
                    token=token,
                    content_type=content_type,
                    timeout=timeout,
                )
            except (http.client.IncompleteRead, ConnectionResetError):
                if method != "GET" or time.monotonic() > deadline:
                    raise
                status, answer, retry_after = 429, {}, 0.5
            if status != 429 or time.monotonic() > deadline:
                return status, answer
            time.sleep(min(max(retry_after, 0.2), 5.0))

    def _request_once(
        self,
        method: str,
        path: str,
        *,
        body_in: Mapping[str, Any] | None,
        token: str | None,
        content_type: str | None,
        timeout: float,
    ) -> tuple[int, Json, float]:
        body = body_in
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or (
                "application/merge-patch+json" if method == "PATCH" else "application/json"
            )
        context = self._ssl
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
            context = ssl.create_default_context(cafile=str(self.pki.ca_file))
        req = urllib.request.Request(
            self.server + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(req, context=context, timeout=timeout) as resp:
                return resp.status, _decode(resp.read()), 0.0
        except urllib.error.HTTPError as err:
            retry_after = float(err.headers.get("Retry-After", "1") or 1)
            return err.code, _decode(err.read()), retry_after

    def ensure_namespace(self, name: str) -> None:
        """Create namespace `name` unless it exists."""
        status, body = self.request(
            "POST",
            "/api/v1/namespaces",
            {"metadata": {"name": name}, "apiVersion": "v1", "kind": "Namespace"},
        )
        if status not in (201, 409):
            raise ClusterError(f"creating namespace {name}: {status} {body}")

    def create(self, obj: Mapping[str, Any], *, finalizers: bool = True) -> Json:
        """Create a kubevirt.io/v1 object (its namespace first); returns the stored object.

        Upstream's schemas judge it strictly: an unknown field or a value out of range fails.

        Server-owned metadata (uid, resourceVersion, ...) in `obj` is dropped, as the API server
        assigns it; everything else is sent as given, and the status of a kind with a status
        subresource is written through it (the create itself drops it). `finalizers=False` drops
        metadata.finalizers: no controller runs here to remove them, so a delete would only mark
        the object as deleting.
        """
        dropped = SERVER_OWNED_METADATA if finalizers else SERVER_OWNED_METADATA | {"finalizers"}
        metadata = {k: v for k, v in obj["metadata"].items() if k not in dropped}
        namespace = metadata["namespace"]
        self.ensure_namespace(namespace)
        body_in = {**obj, "metadata": metadata}
        # Strict: a field upstream's schema does not know is an error, not silently pruned.
        status, body = self.request("POST", kubevirt_path(obj, collection=True) + STRICT, body_in)
        if status == 201 and "status" in obj and obj["kind"] in STATUS_SUBRESOURCE_KINDS:
            # The create dropped the status; write it the way a controller would.
            path = kubevirt_path(body) + "/status" + STRICT
            status, body = self.request("PATCH", path, {"status": obj["status"]})
            status = 201 if status == 200 else status
        if status != 201:
            raise ClusterError(
                f"creating {obj['kind']} {namespace}/{obj['metadata']['name']}: {status} {body}"
            )
        return body


def kubevirt_path(obj: Mapping[str, Any], *, collection: bool = False) -> str:
    """The REST path of a kubevirt.io/v1 object (or of its collection)."""
    plural = {
        "VirtualMachineInstance": "virtualmachineinstances",
        "VirtualMachine": "virtualmachines",
        "VirtualMachineInstanceMigration": "virtualmachineinstancemigrations",
        "KubeVirt": "kubevirts",
    }[obj["kind"]]
    meta = obj["metadata"]
    base = f"/apis/kubevirt.io/v1/namespaces/{meta['namespace']}/{plural}"
    return base if collection else f"{base}/{meta['name']}"


def _decode(data: bytes) -> Json:
    if not data:
        return {}
    try:
        decoded = json.loads(data)
    except ValueError:
        return {"raw": data.decode(errors="replace")}
    return decoded if isinstance(decoded, dict) else {"items": decoded}


def keep_logs(cluster: Cluster, destination: Path) -> Path:
    """Copy both process logs to `destination` (kept after a failed run)."""
    destination.mkdir(parents=True, exist_ok=True)
    for proc in (cluster.etcd, cluster.apiserver):
        if proc.log.exists():
            shutil.copy(proc.log, destination / proc.log.name)
    return destination


def started(workdir: Path) -> Iterator[Cluster]:
    """Start a cluster for the lifetime of the generator (a pytest fixture body)."""
    cluster = Cluster.start(workdir)
    try:
        yield cluster
    finally:
        cluster.stop()

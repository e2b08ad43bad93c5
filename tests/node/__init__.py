"""A real single-node Kubernetes cluster for the tests, confined to this machine.

Contract:
- `Node.start(workdir, image=...)` starts, in `workdir` and under the one run directory
  `RUN_BASE/<pid>`, everything a pod needs: etcd and kube-apiserver (tests/cluster, for a node),
  kube-controller-manager (ServiceAccount tokens, the kube-root-ca.crt ConfigMap, Deployments,
  ReplicaSets, StatefulSets), kube-scheduler, containerd with its own config, socket, root and
  state (beside any system containerd, never touching it) running runc, and a kubelet. The pod
  network is the Linux bridge `BRIDGE` with `SUBNET`, created here, wired by the CNI bridge,
  host-local, loopback and portmap plugins. The exporter image is imported into containerd (no
  registry: pods use it with imagePullPolicy Never); the sandbox ("pause") image is made here
  from Debian's static busybox. Returns once the Node object is Ready.
- Traffic stays on the machine: the API server listens on the bridge's address; the `kubernetes`
  Service IP is DNAT-ed to it for packets from the bridge only (there is no kube-proxy); packets
  from the bridge are never forwarded elsewhere; no masquerading; the host's ip_forward is put
  back as found.
- `Node.stop()` and `sweep()` remove every container, network namespace, mount, process, iptables
  rule and the bridge this harness made. `sweep()` also runs before a start, to clear what a
  killed run left behind (found through the run directories and the rules' comment).
- Failures raise `NodeError` with the tail of every component's log; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import KUBERNETES_SERVICE_IP, Cluster, Process, free_port

#: Where every run keeps its sockets, state and mounts (short: unix socket paths are limited).
RUN_BASE = Path("/run/kue-node")
#: Held (flock) by the one node running on this machine: the bridge, subnet and rules are
#: machine-wide, so a second test session waits for the first instead of sweeping it away.
LOCK = Path("/run/kue-node.lock")
#: How long a session waits for another session's node to finish.
LOCK_TIMEOUT = 1800.0
#: The pod network's bridge, its subnet and the node's address on it (the gateway).
BRIDGE = "kuenode0"
SUBNET = "172.31.237.0/24"
NODE_IP = "172.31.237.1"
NODE_NAME = "kue-node"
#: Marks the iptables rules this harness adds, so a later run can find and remove them.
RULE_COMMENT = "kubevirt-update-exporter-node-test"
#: The sandbox image, made here (no registry): busybox sleeping forever.
PAUSE_IMAGE = "localhost/kue-pause:1.0"
#: containerd's namespace for Kubernetes.
K8S_NAMESPACE = "k8s.io"
CNI_BIN = Path("/usr/lib/cni")
#: Where libcni caches each attachment's result (fixed in containerd 1.6's CRI plugin).
CNI_CACHE = Path("/var/lib/cni/results")
#: The pod network's name in its CNI configuration (its cache files start with it).
CNI_NETWORK = "kue-pods"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
#: How long node start-up and a pod's way to Ready may take on a loaded 2-core machine.
READY_TIMEOUT = 240.0

Json = dict[str, Any]


class NodeError(RuntimeError):
    """The node could not be started or reached; the message says which, with the logs."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 120.0) -> str:
    """Run a host command; stdout, or NodeError with its output when it fails and `check`."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


# --- cleanup --------------------------------------------------------------------------------


def sweep() -> None:
    """Remove whatever any run of this harness left: processes, mounts, rules, the bridge.

    Call it holding LOCK (`Node.start`/`stop` do). A run directory whose session (its name is
    that pytest process's pid) is still alive and is not this one is left alone.
    """
    if RUN_BASE.exists():
        for rundir in sorted(RUN_BASE.iterdir()):
            if rundir.name != str(os.getpid()) and _alive(rundir.name):
                continue
            _end_processes_under(rundir)
            _unmount_under(rundir)
            # The CNI bridge plugin turns forwarding on; put back what the run found.
            with contextlib.suppress(OSError):
                IP_FORWARD.write_text((rundir / "ip_forward").read_text())
            shutil.rmtree(rundir, ignore_errors=True)
            # A killed run could not remove the kubelet's chains; no other kubelet runs here.
            remove_kubelet_chains()
    _delete_rules()
    for cached in CNI_CACHE.glob(f"{CNI_NETWORK}-*"):
        cached.unlink(missing_ok=True)
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        run(["ip", "link", "delete", BRIDGE], check=False)


def _alive(pid: str) -> bool:
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


@contextlib.contextmanager
def machine_lock(timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold LOCK, waiting up to `timeout` for another session's node (NodeError after)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NodeError(
                        f"another test session held {LOCK} for {timeout:.0f}s"
                    ) from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _end_processes_under(rundir: Path) -> None:
    """SIGKILL the processes a run started: those in its `pids` file (whose command line is
    still the one recorded, so a reused PID is left alone) and those whose command line names
    `rundir` (containerd's shims and the kubelet)."""
    recorded: dict[int, bytes] = {}
    pids = rundir / "pids"
    if pids.exists():
        for line in pids.read_text().splitlines():
            pid, _, argv = line.partition(" ")
            recorded[int(pid)] = argv.encode()
    marker = str(rundir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            running = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:
            continue
        if marker in running or recorded.get(int(entry.name)) == running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def record_pid(rundir: Path, proc: Process) -> None:
    """Note a started process in the run's `pids` file, for a later sweep."""
    assert proc.popen is not None
    with (rundir / "pids").open("a") as out:
        out.write(f"{proc.popen.pid} {' '.join(proc.argv)}\n")


def _unmount_under(directory: Path) -> None:
    """Lazily unmount every mount point below `directory`, deepest first."""
    prefix = str(directory) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix) or point == str(directory):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        run(["umount", "--lazy", point], check=False)


#: (table, chain) the kubelet creates for itself (pkg/kubelet/kubelet_network_linux.go).
KUBELET_CHAINS = (
    ("filter", "KUBE-FIREWALL"),
    ("filter", "KUBE-KUBELET-CANARY"),
    ("nat", "KUBE-KUBELET-CANARY"),
    ("mangle", "KUBE-KUBELET-CANARY"),
    ("mangle", "KUBE-IPTABLES-HINT"),
)


def kubelet_chains() -> set[tuple[str, str, str]]:
    """(command, table, chain) of the kubelet's chains present now, IPv4 and IPv6."""
    present = set()
    for command in ("iptables", "ip6tables"):
        for table, chain in KUBELET_CHAINS:
            if run([command, "-t", table, "-S", chain], check=False):
                present.add((command, table, chain))
    return present


def remove_kubelet_chains(keep: AbstractSet[tuple[str, str, str]] = frozenset()) -> None:
    """Remove the kubelet's chains (and the jumps into them) except those in `keep`."""
    for command, table, chain in kubelet_chains() - keep:
        for builtin in ("INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"):
            # -D fails once no such jump is left (or the table has no such built-in chain).
            while _succeeds([command, "-t", table, "-D", builtin, "-j", chain]):
                pass
        run([command, "-t", table, "-F", chain], check=False)
        run([command, "-t", table, "-X", chain], check=False)


def _succeeds(argv: Sequence[str]) -> bool:
    return subprocess.run(list(argv), capture_output=True, check=False).returncode == 0


def _rules() -> list[tuple[str, list[str]]]:
    """(table, rule arguments after -A) of every iptables rule carrying RULE_COMMENT."""
    found = []
    for table in ("nat", "filter"):
        for line in run(["iptables", "-t", table, "-S"], check=False).splitlines():
            if RULE_COMMENT in line and line.startswith("-A "):
                found.append((table, line.split()[1:]))
    return found


def _delete_rules() -> None:
    for table, rule in _rules():
        # `iptables -S` quotes the comment; the argument list must not carry the quotes.
        run(["iptables", "-t", table, "-D", *[part.strip('"') for part in rule]], check=False)


# --- images ---------------------------------------------------------------------------------


def pause_image_archive(path: Path) -> Path:
    """A docker archive of PAUSE_IMAGE: Debian's static busybox, `sleep` as the entrypoint."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise NodeError("/bin/busybox is missing: scripts/setup installs busybox-static")
    layer = BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        # busybox picks its applet from argv[0]: it must be called as "busybox".
        tar.add(busybox, arcname="bin/busybox")
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": ["/bin/busybox", "sleep", "2147483647"],
                "User": "65535:65535",
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [PAUSE_IMAGE], "Layers": ["layer.tar"]}]
    ).encode()
    with tarfile.open(path, mode="w") as tar:
        for name, data in (
            ("layer.tar", layer_bytes),
            (config_name, config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, BytesIO(data))
    return path


# --- the node -------------------------------------------------------------------------------


@dataclass
class Node:
    """A running single-node cluster; see the module docstring."""

    workdir: Path
    rundir: Path
    cluster: Cluster
    processes: list[Process] = field(default_factory=list)
    ip_forward_before: str = "0"
    #: Releases LOCK when the node stops.
    lock: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    #: The kubelet's iptables chains that existed before it started (left alone at stop).
    chains_before: AbstractSet[tuple[str, str, str]] = frozenset()

    @property
    def socket(self) -> Path:
        return self.rundir / "containerd.sock"

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        images: Sequence[Path],
        apiserver_args: Sequence[str] = (),
    ) -> Node:
        """Start the whole node (see the module docstring); `images` are docker archives.

        Waits for LOCK first: one node per machine at a time."""
        lock = contextlib.ExitStack()
        lock.enter_context(machine_lock())
        try:
            return cls._start_locked(
                workdir, images=images, apiserver_args=apiserver_args, lock=lock
            )
        except BaseException:
            lock.close()
            raise

    @classmethod
    def _start_locked(
        cls,
        workdir: Path,
        *,
        images: Sequence[Path],
        apiserver_args: Sequence[str],
        lock: contextlib.ExitStack,
    ) -> Node:
        sweep()
        workdir.mkdir(parents=True, exist_ok=True)
        rundir = RUN_BASE / str(os.getpid())
        rundir.mkdir(parents=True, exist_ok=True)
        ip_forward = IP_FORWARD.read_text().strip()
        (rundir / "ip_forward").write_text(ip_forward + "\n")
        _make_bridge()
        cluster: Cluster | None = None
        try:
            cluster = Cluster.start(
                workdir / "control-plane",
                host=NODE_IP,
                for_node=True,
                extra_args=apiserver_args,
            )
            for proc in (cluster.etcd, cluster.apiserver):
                record_pid(rundir, proc)
            node = cls(workdir, rundir, cluster, ip_forward_before=ip_forward, lock=lock)
        except BaseException:
            if cluster is not None:
                cluster.stop()
            sweep()
            raise
        try:
            node._start_node(images)
        except BaseException:
            node.stop()
            raise
        return node

    def _start_node(self, images: Sequence[Path]) -> None:
        self._add_rules()
        self._start_containerd()
        self._import(pause_image_archive(self.workdir / "pause.tar"))
        for image in images:
            self._import(image)
        self._start_controller_manager()
        self._start_scheduler()
        self.chains_before = kubelet_chains()
        self._start_kubelet()
        self.wait(self._node_ready, "node Ready")
        self.wait(
            lambda: (
                self.cluster.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0]
                == 200
            ),
            "the default ServiceAccount (controller-manager)",
        )

    def stop(self) -> None:
        """Remove every pod's containers, stop every process, clear the network and mounts."""
        with contextlib.suppress(Exception):
            self._remove_containers()
        for proc in reversed(self.processes):
            proc.stop(timeout=20)
        self.cluster.stop()
        sweep()
        remove_kubelet_chains(keep=self.chains_before)
        IP_FORWARD.write_text(self.ip_forward_before + "\n")
        self.lock.close()

    def _remove_containers(self) -> None:
        """Kill and delete every container and task containerd runs for us (shims exit too)."""
        if not self.socket.exists():
            return
        ctr = ["ctr", "--address", str(self.socket), "--namespace", K8S_NAMESPACE]
        for container in run([*ctr, "containers", "list", "--quiet"], check=False).split():
            run([*ctr, "tasks", "kill", "--signal", "SIGKILL", container], check=False)
            run([*ctr, "tasks", "delete", "--force", container], check=False)
            run([*ctr, "containers", "delete", container], check=False)
            # The loopback attachment of a sandbox is cached under the sandbox's id.
            (CNI_CACHE / f"cni-loopback-{container}-lo").unlink(missing_ok=True)

    # -- pieces ----------------------------------------------------------------------------

    def _add_rules(self) -> None:
        comment = ["-m", "comment", "--comment", RULE_COMMENT]
        rules = [
            # No kube-proxy: pods reach the `kubernetes` Service IP, as in-cluster config does.
            (
                "nat",
                ["PREROUTING", "-i", BRIDGE, "-d", KUBERNETES_SERVICE_IP, "-p", "tcp",
                 "--dport", "443", *comment, "-j", "DNAT",
                 "--to-destination", f"{NODE_IP}:{self.cluster.apiserver_port}"],
            ),
            # Nothing from the pod network leaves the bridge for another interface.
            ("filter", ["FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, *comment, "-j", "DROP"]),
            ("filter", ["FORWARD", "-o", BRIDGE, "!", "-i", BRIDGE, *comment, "-j", "DROP"]),
        ]  # fmt: skip
        for table, rule in rules:
            run(["iptables", "-t", table, "-I", *rule])

    def _spawn(self, name: str, argv: list[str]) -> Process:
        proc = Process(name, argv, self.workdir / f"{name}.log")
        proc.start()
        record_pid(self.rundir, proc)
        self.processes.append(proc)
        return proc

    def _start_containerd(self) -> None:
        cni_conf = self.workdir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-kue.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": CNI_NETWORK,
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": SUBNET, "gateway": NODE_IP}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.rundir / "cni-ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=2,
            )
        )
        config = self.rundir / "containerd.toml"
        state = self.rundir / "containerd-state"
        config.write_text(
            f"""version = 2
root = "{self.rundir / "containerd-root"}"
state = "{state}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.rundir / "containerd-ttrpc.sock"}"
[debug]
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.rundir / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE on these machines: runc may not lower oom_score_adj below ours.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "runc"
        Root = "{self.rundir / "runc"}"
        SystemdCgroup = false
"""
        )
        self._spawn("containerd", ["containerd", "--config", str(config)])
        self.wait(
            lambda: run(["ctr", "--address", str(self.socket), "version"], check=False) != "",
            "containerd's socket",
        )

    def _import(self, archive: Path) -> None:
        run(
            ["ctr", "--address", str(self.socket), "--namespace", K8S_NAMESPACE, "images",
             "import", "--no-unpack", str(archive)],
            timeout=600,
        )  # fmt: skip

    def _kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    def _start_controller_manager(self) -> None:
        pki = self.cluster.pki
        self._spawn(
            "kube-controller-manager",
            [
                str(self.cluster.binaries / "kube-controller-manager"),
                f"--kubeconfig={self._kubeconfig()}",
                f"--authentication-kubeconfig={self._kubeconfig()}",
                f"--authorization-kubeconfig={self._kubeconfig()}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_file}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--controllers=*,-node-ipam-controller",
                "--v=1",
            ],
        )

    def _start_scheduler(self) -> None:
        self._spawn(
            "kube-scheduler",
            [
                str(self.cluster.binaries / "kube-scheduler"),
                f"--kubeconfig={self._kubeconfig()}",
                f"--authentication-kubeconfig={self._kubeconfig()}",
                f"--authorization-kubeconfig={self._kubeconfig()}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
                "--v=1",
            ],
        )

    def _start_kubelet(self) -> None:
        root = self.rundir / "kubelet"
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # These machines run cgroup v1 (hybrid); kubelet refuses it unless told.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            # No QoS cgroup tree: nothing machine-wide (kubepods) is created.
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": "127.0.0.1",
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.cluster.pki.ca_file)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "failSwapOn": False,
            # A shared test machine: never evict or garbage-collect images for disk.
            "evictionHard": {
                "imagefs.available": "0%",
                "nodefs.available": "0%",
                "nodefs.inodesFree": "0%",
            },
            "imageGCHighThresholdPercent": 100,
            "podLogsDir": str(self.rundir / "pod-logs"),
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            "syncFrequency": "5s",
            "fileCheckFrequency": "5s",
            "nodeStatusUpdateFrequency": "5s",
            "volumeStatsAggPeriod": "0s",
            "localStorageCapacityIsolation": False,
        }
        config_path = self.workdir / "kubelet.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self._spawn(
            "kubelet",
            [
                str(self.cluster.binaries / "kubelet"),
                f"--config={config_path}",
                f"--kubeconfig={self._kubeconfig()}",
                f"--root-dir={root}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--cert-dir={self.workdir / 'kubelet-certs'}",
                "--v=1",
            ],
        )

    # -- waiting ---------------------------------------------------------------------------

    def logs(self, lines: int = 30) -> str:
        """The tail of every component's log."""
        procs = [self.cluster.etcd, self.cluster.apiserver, *self.processes]
        return "\n".join(proc.tail(lines) for proc in procs)

    def wait(
        self, probe: Callable[[], object], what: str, timeout: float = READY_TIMEOUT
    ) -> object:
        """Poll `probe` until truthy (returned); NodeError with the logs when time runs out or a
        component exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in [self.cluster.etcd, self.cluster.apiserver, *self.processes]:
                if proc.popen is not None and not proc.alive():
                    raise NodeError(f"{proc.name} exited while waiting for {what}\n{self.logs()}")
            with contextlib.suppress(OSError, NodeError):
                result = probe()
                if result:
                    return result
            time.sleep(0.5)
        raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")

    def _node_ready(self) -> bool:
        status, body = self.cluster.request("GET", f"/api/v1/nodes/{NODE_NAME}")
        if status != 200:
            return False
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in body.get("status", {}).get("conditions", [])
        )

    def restart_apiserver(self) -> None:
        """Restart the API server (every watch breaks; clients reconnect with the credentials
        they hold now) and record its new process for a later sweep."""
        self.cluster.restart_apiserver()
        record_pid(self.rundir, self.cluster.apiserver)

    # -- reading the cluster ---------------------------------------------------------------

    @property
    def kubelet_root(self) -> Path:
        """The kubelet's --root-dir: pods' volumes live under it."""
        return self.rundir / "kubelet"

    def projected_file(self, pod: Json, volume: str, name: str) -> Path:
        """Where the kubelet writes file `name` of the pod's projected `volume` on the host (the
        same bytes the container reads; the kubelet swaps them in atomically)."""
        uid = str(pod["metadata"]["uid"])
        return (
            self.kubelet_root / "pods" / uid / "volumes" / "kubernetes.io~projected" / volume / name
        )

    def container_log(self, pod: Json, container: str) -> str:
        """Everything the container wrote to stdout and stderr so far, in CRI log format (one
        `<time> <stream> <tag> <line>` per line), across its restarts."""
        meta = pod["metadata"]
        directory = (
            self.rundir
            / "pod-logs"
            / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
            / container
        )
        return "".join(log.read_text() for log in sorted(directory.glob("*.log")))

    # -- reading the cluster ---------------------------------------------------------------

    def pods(self, namespace: str, selector: str = "") -> list[Json]:
        """The pods of `namespace` (matching the label `selector`)."""
        query = f"?labelSelector={selector}" if selector else ""
        status, body = self.cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods{query}")
        if status != 200:
            raise NodeError(f"listing pods in {namespace}: {status} {body}")
        items: list[Json] = body["items"]
        return items

    def ready_pods(self, namespace: str, selector: str, count: int) -> list[Json]:
        """Wait until exactly `count` pods match and every one is Ready; returns them."""

        def probe() -> list[Json] | None:
            pods = [
                p
                for p in self.pods(namespace, selector)
                if not p["metadata"].get("deletionTimestamp")
            ]
            ready = [p for p in pods if _is_ready(p)]
            return ready if len(pods) == count and len(ready) == count else None

        found = self.wait(probe, f"{count} Ready pod(s) {selector} in {namespace}")
        assert isinstance(found, list)
        return found

    def describe(self, namespace: str) -> str:
        """Pods and events of `namespace`, for failure messages."""
        _, pods = self.cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods")
        _, events = self.cluster.request("GET", f"/api/v1/namespaces/{namespace}/events")
        lines = [
            f"pod {p['metadata']['name']}: {json.dumps(p.get('status', {}))[:1500]}"
            for p in pods.get("items", [])
        ]
        lines += [
            f"event {e.get('reason')} {e.get('involvedObject', {}).get('name')}: {e.get('message')}"
            for e in events.get("items", [])
        ]
        return "\n".join(lines)


def _is_ready(pod: Json) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _make_bridge() -> None:
    run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "address", "add", f"{NODE_IP}/{SUBNET.split('/')[1]}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


@contextlib.contextmanager
def started(workdir: Path, *, images: Sequence[Path]) -> Iterator[Node]:
    """A node for the lifetime of the context."""
    node = Node.start(workdir, images=images)
    try:
        yield node
    finally:
        node.stop()

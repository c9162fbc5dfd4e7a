"""A real node for the test cluster: a kubelet (built from the same Kubernetes source as the
control plane, tests/kube/build.sh) running pods through containerd and runc (Debian's, the
ones the Docker engine uses), on a CNI bridge with host-local addresses (Debian's
containernetworking-plugins). It registers itself, pulls images from the local registry
(127.0.0.1:5001, plain HTTP), runs them with the pod spec's user, volumes, probes and
resources, and reports their real status: ImagePullBackOff, CrashLoopBackOff, probes that
fail, pods the scheduler cannot place.

Everything it keeps is under its folder: containerd's root and state, the kubelet's root,
the CNI configuration, the logs. The host reaches every pod at its address on the bridge
(the API server's proxy, the kubelet's probes, Prometheus). The kubelet listens on the
node's own address (NODE_IP, on the loopback device) and answers only the API server (a
client certificate of the cluster's CA). What it changes on the host is put back by `stop`:
containers and their shims ended, mounts unmounted, the bridge and the node's address
deleted, the pods' cgroups removed, the kernel settings the kubelet and the bridge set
restored. The
kubelet's iptables chains are not made (makeIPTablesUtilChains: false): no packet filter
is changed. Here, as root, runc cannot lower a process's OOM score (no CAP_SYS_RESOURCE):
containerd's restrict_oom_score_adj keeps it from trying.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.kube.cluster import CACHE, Cluster, free_port, kubeconfig, until

NAME = "mlship-node"
TOKEN = "node-token-for-tests"  # system:node:<NAME> in system:nodes (the Node authorizer)
POD_CIDR = "10.244.128.0/24"
BRIDGE = "mlship-cni0"
PAUSE = "mlship.test/pause:1"  # no registry here serves registry.k8s.io/pause
REGISTRY = "127.0.0.1:5001"
# what a kubelet sets at start (ProtectKernelDefaults off), put back at stop
# (and the CNI bridge plugin's forwarding)
KERNEL_SETTINGS = (
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
)
# the node's own address: on the loopback device, so the kubelet (which will not take a
# 127.0.0.0/8 address) and the API server's calls to it stay on this host
NODE_IP = "10.244.255.1"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def host_tools() -> list[str]:
    """What the node needs from the host that is missing (empty: it can start)."""
    needed = {
        "containerd": "/usr/bin/containerd",
        "containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2",
        "ctr": "/usr/bin/ctr",
        "runc": "/usr/sbin/runc",
        "CNI bridge plugin": "/usr/lib/cni/bridge",
    }
    return [name for name, path in needed.items() if not Path(path).exists()]


@dataclass
class Node:
    folder: Path
    socket: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kernel: dict[str, str] = field(default_factory=dict)
    started_seconds: float = 0.0
    # the host's network namespaces before the node: killed pods never get their CNI DEL,
    # so stop removes the pods' namespaces (and veths) that are new since
    namespaces_before: frozenset[str] = frozenset()

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {done.stderr or done.stdout}")
        return done

    def stop(self) -> None:
        """End every container and shim, the kubelet and containerd; unmount, delete the
        bridge and the pods' cgroups; restore the kernel settings."""
        kubelet = self.processes.pop("kubelet", None)
        if kubelet is not None:
            _end(kubelet)
        with contextlib.suppress(Exception):
            for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        _kill_shims(self.socket)
        containerd = self.processes.pop("containerd", None)
        if containerd is not None:
            _end(containerd)
        _unmount_under(self.folder)
        for namespace in _network_namespaces() - self.namespaces_before:
            if namespace.startswith("cni-"):
                subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        subprocess.run(
            ["ip", "addr", "del", f"{NODE_IP}/32", "dev", "lo"], capture_output=True, check=False
        )
        _remove_cgroups("kubepods")
        for key, value in self.kernel.items():
            with contextlib.suppress(OSError):
                Path("/proc/sys", key).write_text(value)


def _network_namespaces() -> frozenset[str]:
    try:
        return frozenset(entry.name for entry in Path("/var/run/netns").iterdir())
    except OSError:
        return frozenset()


def _end(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _kill_shims(socket: Path) -> None:
    """The runc shims of this containerd (they outlive it by design), found by the socket
    address on their command line."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if command[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in command:
                os.kill(int(entry.name), signal.SIGKILL)


def _unmount_under(folder: Path) -> None:
    """Every mount point under `folder`, deepest first (the kubelet's volumes, the
    containers' root filesystems)."""
    prefix = str(folder.resolve())
    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]
    for point in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_cgroups(name: str) -> None:
    """The cgroup `name` and everything under it, in every v1 hierarchy (leaves first)."""
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        folders = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for folder in [*folders, top]:
            with contextlib.suppress(OSError):
                folder.rmdir()


def pause_image(path: Path) -> Path:
    """The pods' sandbox image as a docker-archive tarball: the static pause binary
    (tests/kube/pause) alone in a scratch image."""
    binary = (CACHE / "pause").read_bytes()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("pause")
        info.size, info.mode = len(binary), 0o755
        tar.addfile(info, io.BytesIO(binary))
    import hashlib

    layer_bytes = layer.getvalue()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {
            "type": "layers",
            "diff_ids": [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"],
        },
    }
    with tarfile.open(path, "w") as tar:
        for name, data in (
            ("layer.tar", layer_bytes),
            ("config.json", json.dumps(config).encode()),
            (
                "manifest.json",
                json.dumps(
                    [{"Config": "config.json", "RepoTags": [PAUSE], "Layers": ["layer.tar"]}]
                ).encode(),
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


CONTAINERD_CONFIG = """version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{registries}"
"""

CNI_CONFIG = {
    "cniVersion": "0.4.0",
    "name": "mlship-pods",
    "plugins": [
        {
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_CIDR}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        },
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}

KUBELET_CONFIG = """apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{socket}
address: {address}
port: {port}
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
readOnlyPort: 0
authentication:  # only the API server (its client certificate, of the cluster's CA)
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: AlwaysAllow}}
podLogsDir: {logs}
makeIPTablesUtilChains: false
failSwapOn: false
registerNode: true
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}}
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 5s
syncFrequency: 5s
fileCheckFrequency: 5s
resolvConf: /etc/resolv.conf
maxPods: 40
"""


def start(cluster: Cluster, folder: Path) -> Node:
    """containerd and a kubelet registered as NAME; returns once the node is Ready."""
    started = time.monotonic()
    missing = host_tools()
    if missing:
        raise RuntimeError(f"the node needs {', '.join(missing)} (Debian: docker.io, "
                           "containernetworking-plugins)")  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    socket = folder / "containerd.sock"
    node = Node(folder, socket, namespaces_before=_network_namespaces())
    for key in KERNEL_SETTINGS:
        with contextlib.suppress(OSError):
            node.kernel[key] = Path("/proc/sys", key).read_text().strip()
    cni = folder / "cni"
    cni.mkdir(exist_ok=True)
    (cni / "10-mlship.conflist").write_text(json.dumps(CNI_CONFIG))
    registries = folder / "registries" / REGISTRY
    registries.mkdir(parents=True, exist_ok=True)
    (registries / "hosts.toml").write_text(
        f'server = "http://{REGISTRY}"\n\n[host."http://{REGISTRY}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )
    (folder / "containerd.toml").write_text(
        CONTAINERD_CONFIG.format(
            root=folder / "containerd" / "root",
            state=folder / "containerd" / "state",
            socket=socket,
            pause=PAUSE,
            cni=cni,
            registries=folder / "registries",
        )
    )
    try:
        # replace, not add: a session killed before its teardown leaves the address behind
        subprocess.run(
            ["ip", "addr", "replace", f"{NODE_IP}/32", "dev", "lo"], capture_output=True, check=True
        )
        node.processes["containerd"] = _spawn(
            folder, "containerd", ["containerd", "--config", str(folder / "containerd.toml")]
        )
        until(lambda: socket.exists(), "containerd's socket", cluster, timeout=30)
        node.ctr("images", "import", str(pause_image(folder / "pause.tar")))
        config = kubeconfig(folder / "kubelet.kubeconfig", cluster.server, cluster.ca, TOKEN)
        healthz = free_port()
        (folder / "kubelet.yaml").write_text(
            KUBELET_CONFIG.format(
                socket=socket,
                address=NODE_IP,
                port=free_port(),
                healthz=healthz,
                logs=folder / "pod-logs",
                ca=cluster.ca,
            )
        )
        node.processes["kubelet"] = _spawn(
            folder,
            "kubelet",
            [
                str(CACHE / "kubelet"),
                f"--config={folder / 'kubelet.yaml'}",
                f"--kubeconfig={config}",
                f"--root-dir={folder / 'kubelet'}",
                f"--cert-dir={folder / 'kubelet-pki'}",
                f"--hostname-override={NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )

        def ready() -> bool:
            if node.processes["kubelet"].poll() is not None:
                raise AssertionError("the kubelet exited: " + _tail(folder, "kubelet"))
            status = cluster.kubectl(
                "get",
                "node",
                NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            )
            return status.stdout == "True"

        until(ready, f"node {NAME} Ready", cluster, timeout=120)
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{healthz}/healthz", timeout=5).raise_for_status()
    except BaseException:
        node.stop()
        raise
    node.started_seconds = time.monotonic() - started
    return node


def _spawn(folder: Path, name: str, command: list[str]) -> subprocess.Popen[bytes]:
    log = (folder / f"{name}.log").open("ab")
    return subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)


def _tail(folder: Path, name: str) -> str:
    return (folder / f"{name}.log").read_text(errors="replace")[-3000:]


def remove_stale(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)

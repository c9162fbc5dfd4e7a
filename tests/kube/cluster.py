"""A real Kubernetes control plane for the tests: etcd, kube-apiserver (RBAC and the Node
authorizer on), kube-controller-manager and kube-scheduler built from source
(tests/kube/build.sh). Everything binds 127.0.0.1 on free ports, uses certificates and
tokens made for this run, and is stopped by PID. Its node, a real kubelet running pods, is
tests/kube/node.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO

KUBERNETES = os.environ.get("MLSHIP_KUBERNETES_VERSION", "1.37.2")
CACHE = Path(os.environ.get("MLSHIP_KUBE_CACHE", Path.home() / ".cache/mlship/k8s")) / KUBERNETES
# the Gateway API's data plane (tests/kube/gateway.py), built by the same script
TRAEFIK_CACHE = CACHE.parent / f"traefik-{os.environ.get('MLSHIP_TRAEFIK_VERSION', '3.6.12')}"
# Prometheus with Kubernetes discovery (tests/kube/scrape.py), built by the same script
PROMETHEUS = (
    CACHE.parent
    / f"prometheus-{os.environ.get('MLSHIP_PROMETHEUS_MODULE_VERSION', '0.316.0')}"
    / "prometheus"
)
BUILD = REPO / "tests" / "kube" / "build.sh"
TOKENS = {  # user -> (token, groups): the API server's static token file
    "admin": ("admin-token-for-tests", "system:masters"),
    "system:kube-controller-manager": ("controller-manager-token", ""),
    "system:kube-scheduler": ("scheduler-token", ""),
    # the node's kubelet, as the Node authorizer knows kubelets (tests/kube/node.py)
    "system:node:mlship-node": ("node-token-for-tests", "system:nodes"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_built() -> Path:
    """The binaries, built first if this machine has not built them yet."""
    needed = (
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
        "kubelet",
        "pause",
    )
    traefik = (TRAEFIK_CACHE / "traefik", TRAEFIK_CACHE / "gateway-api-crds.yaml", PROMETHEUS)
    if not all((CACHE / name).is_file() for name in needed) or not all(
        path.is_file() for path in traefik
    ):
        env = {**os.environ, "PYTHON": sys.executable}
        subprocess.run(["bash", str(BUILD)], check=True, timeout=3600, env=env)
    return CACHE


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _certificates(folder: Path) -> None:
    """A CA, the API server's serving certificate for 127.0.0.1, its client certificate for
    the kubelet (which trusts only clients of this CA), and the service-account signing
    key."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=mlship-test-ca",
        "-keyout",
        str(folder / "ca.key"),
        "-out",
        str(folder / "ca.crt"),
    )
    (folder / "san.cnf").write_text(
        "[v3]\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=kube-apiserver",
        "-keyout",
        str(folder / "apiserver.key"),
        "-out",
        str(folder / "apiserver.csr"),
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(folder / "apiserver.csr"),
        "-CA",
        str(folder / "ca.crt"),
        "-CAkey",
        str(folder / "ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(folder / "san.cnf"),
        "-extensions",
        "v3",
        "-out",
        str(folder / "apiserver.crt"),
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=kube-apiserver-kubelet-client/O=system:masters",
        "-keyout",
        str(folder / "kubelet-client.key"),
        "-out",
        str(folder / "kubelet-client.csr"),
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(folder / "kubelet-client.csr"),
        "-CA",
        str(folder / "ca.crt"),
        "-CAkey",
        str(folder / "ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        str(folder / "kubelet-client.crt"),
    )
    _openssl("genrsa", "-out", str(folder / "sa.key"), "2048")
    _openssl("rsa", "-in", str(folder / "sa.key"), "-pubout", "-out", str(folder / "sa.pub"))


def kubeconfig(path: Path, server: str, ca: Path, token: str, namespace: str = "default") -> Path:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "{server}", certificate-authority: "{ca}"}}}}]
users: [{{name: user, user: {{token: "{token}"}}}}]
contexts: [{{name: test, context: {{cluster: test, user: user, namespace: {namespace}}}}}]
current-context: test
"""
    )
    return path


@dataclass
class Cluster:
    """A running control plane: its address, an admin kubeconfig, and kubectl."""

    folder: Path
    server: str
    ca: Path
    admin: Path  # kubeconfig
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_seconds: float = 0.0
    node: Any = None  # its node (tests/kube/node.py), once started

    @property
    def bin(self) -> Path:
        return CACHE

    def kubectl(
        self, *args: str, config: Path | None = None, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(CACHE / "kubectl"), f"--kubeconfig={config or self.admin}", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr or done.stdout}")
        return done

    def apply(self, manifest: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", *args, input=manifest)

    def env(self, config: Path | None = None) -> dict[str, str]:
        """Variables for a process that runs kubectl against this cluster."""
        return {
            "KUBECONFIG": str(config or self.admin),
            "PATH": f"{CACHE}{os.pathsep}{os.environ['PATH']}",
        }

    def service_account_config(self, namespace: str, account: str) -> Path:
        """A kubeconfig that acts as `account` in `namespace` (a token the API server signs)."""
        token = self.kubectl("create", "token", account, "-n", namespace, "--duration=2h")
        path = self.folder / f"{namespace}-{account}.kubeconfig"
        return kubeconfig(path, self.server, self.ca, token.stdout.strip(), namespace)

    def stop_apiserver(self) -> None:
        _stop(self.processes.pop("kube-apiserver"))

    def start_apiserver(self) -> None:
        self.processes["kube-apiserver"] = self._spawn("kube-apiserver", self._apiserver_args)
        self._wait_ready()

    # --- start-up ---------------------------------------------------------------------

    _apiserver_args: list[str] = field(default_factory=list)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("ab")
        return subprocess.Popen(
            [str(CACHE / name), *args], stdout=log, stderr=log, start_new_session=True
        )

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        token = TOKENS["admin"][0]
        while time.monotonic() < deadline:
            process = self.processes.get("kube-apiserver")
            if process is not None and process.poll() is not None:
                raise AssertionError("kube-apiserver exited: " + self._tail("kube-apiserver"))
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(
                    f"{self.server}/readyz",
                    verify=str(self.ca),
                    timeout=2,
                    headers={"Authorization": f"Bearer {token}"},
                )
                if answer.status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError("kube-apiserver not ready: " + self._tail("kube-apiserver"))

    def _tail(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            _stop(self.processes.pop(name))


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start(folder: Path) -> Cluster:
    """etcd, the API server, the controllers and the scheduler; returns once the API server
    is ready and the default service account made."""
    started = time.monotonic()
    ensure_built()
    folder.mkdir(parents=True, exist_ok=True)
    _certificates(folder)
    (folder / "tokens.csv").write_text(
        "".join(f'{token},{user},{user},"{groups}"\n' for user, (token, groups) in TOKENS.items())
    )
    etcd_client, etcd_peer, port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{port}"
    ca = folder / "ca.crt"
    configs = {
        user: kubeconfig(folder / f"{user.replace(':', '-')}.kubeconfig", server, ca, token)
        for user, (token, _) in TOKENS.items()
    }
    cluster = Cluster(folder, server, ca, configs["admin"])
    cluster._apiserver_args = [
        f"--etcd-servers=http://127.0.0.1:{etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={folder / 'apiserver.crt'}",
        f"--tls-private-key-file={folder / 'apiserver.key'}",
        f"--token-auth-file={folder / 'tokens.csv'}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-key-file={folder / 'sa.pub'}",
        f"--service-account-signing-key-file={folder / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--kubelet-client-certificate={folder / 'kubelet-client.crt'}",
        f"--kubelet-client-key={folder / 'kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",  # no DNS knows the node's name
        "--service-cluster-ip-range=10.96.0.0/16",
        "--endpoint-reconciler-type=none",  # no kubernetes Service endpoints to 127.0.0.1
        "--enable-priority-and-fairness=false",
        "--profiling=false",
    ]
    try:
        cluster.processes["etcd"] = cluster._spawn(
            "etcd",
            [
                f"--data-dir={folder / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=2147483648",
            ],
        )
        cluster.processes["kube-apiserver"] = cluster._spawn(
            "kube-apiserver", cluster._apiserver_args
        )
        cluster._wait_ready()
        cluster.processes["kube-controller-manager"] = cluster._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={configs['system:kube-controller-manager']}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={folder / 'sa.key'}",
                f"--root-ca-file={ca}",
                "--use-service-account-credentials=true",
                "--controllers=*",
                "--node-monitor-grace-period=40s",
            ],
        )
        cluster.processes["kube-scheduler"] = cluster._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={configs['system:kube-scheduler']}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
        )
        until(
            lambda: (
                cluster.kubectl("get", "serviceaccount", "default", check=False).returncode == 0
            ),
            "the default service account",
            cluster,
        )
    except BaseException:
        cluster.stop()
        raise
    cluster.started_seconds = time.monotonic() - started
    return cluster


def until(condition: Callable[[], bool], what: str, cluster: Cluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    logs = "\n".join(f"--- {n}\n{cluster._tail(n)[-800:]}" for n in cluster.processes)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")

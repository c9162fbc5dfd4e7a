"""The real control plane (tests/kube/cluster.py), started once per test session, and the
app's manifests applied in a namespace of each test's own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import yaml

from mlship.pipeline.artifacts import save_model
from mlship.pipeline.train import fit
from tests.conftest import REPO, hermetic_env, make_params, text_frame
from tests.kube.cluster import CACHE, POD_IP, Cluster, ensure_built, pod_network, start, until
from tests.processes import running
from tests.prometheus.conftest import prometheus  # noqa: F401 (the canary tests' fixture)
from tests.serving.conftest import card_for

pytestmark = pytest.mark.kube
IMAGE = "127.0.0.1:5001/reviews:0123456789ab-m1"  # the pod server's model is version 1


def _unavailable(why: str) -> None:
    if os.environ.get("MLSHIP_REQUIRE_TOOLS") == "1":
        pytest.fail(f"required here: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        ensure_built()
    except (OSError, subprocess.CalledProcessError) as error:
        _unavailable(f"the Kubernetes binaries cannot be built (tests/kube/build.sh): {error}")
    if os.geteuid() != 0:
        _unavailable("the pods' network namespace needs root")
    started = start(tmp_path_factory.mktemp("kube"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def pod_server(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[str]:
    """A real mlship server at POD_IP:8000 in a network namespace: what every Ready pod's
    address leads to. It serves a small text model that says it is version 1."""
    folder = tmp_path_factory.mktemp("pod-model")
    card = card_for(["great", "other"]).updated(registry={"name": "reviews", "version": "1"})
    save_model(fit(make_params(), text_frame(20)), card, folder)
    with pod_network() as namespace:
        mlship = Path(sys.executable).with_name("mlship")
        command = [
            "ip",
            "netns",
            "exec",
            namespace,
            str(mlship),
            "serve",
            "--model",
            str(folder),
            "--host",
            POD_IP,
            "--port",
            "8000",
        ]
        with running(command, f"http://{POD_IP}:8000/ready", ready_timeout=90, env=hermetic_env()):
            yield f"http://{POD_IP}:8000"


@dataclass(frozen=True)
class App:
    """The app's manifests in a namespace: the staging overlay, as its admin applies it."""

    cluster: Cluster
    namespace: str
    deployer: Path  # kubeconfig of the CI deployer (RBAC: k8s/components/deployer)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", self.namespace, *args, check=check)

    def image(self, deployment: str = "mlship") -> str:
        return self.kubectl(
            "get",
            f"deployment/{deployment}",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ).stdout

    def env(self) -> dict[str, str]:
        """A process environment that runs kubectl as the CI deployer in this namespace."""
        return hermetic_env() | self.cluster.env(self.deployer)


def render(overlay: str, namespace: str, image: str = IMAGE) -> list[dict[str, object]]:
    """The overlay rendered by kubectl's kustomize, in `namespace`, on `image`, with a short
    progress deadline (a rollout that cannot progress fails in seconds, not ten minutes)."""
    done = subprocess.run(
        [str(CACHE / "kubectl"), "kustomize", str(REPO / "k8s" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    documents = [d for d in yaml.safe_load_all(done.stdout) if d]
    for document in documents:
        document["metadata"]["namespace"] = namespace
        for subject in document.get("subjects", []):  # the RoleBinding's service account
            subject["namespace"] = namespace
        if document["kind"] == "Deployment":
            spec = document["spec"]
            spec["progressDeadlineSeconds"] = 15
            spec["template"]["spec"]["containers"][0]["image"] = image
    return documents


@pytest.fixture(scope="session")
def istio_crds(cluster: Cluster) -> None:
    """Istio's own VirtualService and DestinationRule CRDs (istio.io/api's published file)."""
    cluster.kubectl("apply", "--server-side", "-f", str(CACHE / "istio-crds.yaml"))
    for crd in ("virtualservices", "destinationrules"):
        until(partial(_established, cluster, crd), f"the {crd} CRD", cluster)


def _established(cluster: Cluster, crd: str) -> bool:
    condition = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    read = cluster.kubectl("get", f"crd/{crd}.networking.istio.io", "-o", condition, check=False)
    return read.stdout == "True"


@pytest.fixture
def app(cluster: Cluster, istio_crds: None, pod_server: str) -> Iterator[App]:
    namespace = f"mlship-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    documents = [
        d
        for d in render("overlays/staging", namespace)
        if d["kind"] not in ("PodMonitoring", "Rules")
    ]  # GKE's CRDs: not here
    cluster.apply(yaml.safe_dump_all(documents))
    cluster.kubectl("-n", namespace, "rollout", "status", "deployment/mlship", "--timeout=60s")
    yield App(cluster, namespace, cluster.service_account_config(namespace, "mlship-deployer"))
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")

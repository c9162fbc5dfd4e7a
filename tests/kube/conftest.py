"""The app's manifests applied in a namespace of each test's own, on the session's control
plane (tests/kube/fixtures.py)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, hermetic_env
from tests.kube.cluster import CACHE, Cluster
from tests.prometheus.conftest import prometheus  # noqa: F401 (the canary tests' fixture)

pytestmark = pytest.mark.kube
IMAGE = "127.0.0.1:5001/reviews:0123456789ab-m1"  # the pod server's model is version 1


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

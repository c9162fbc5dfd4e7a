"""The app's manifests applied in a namespace of each test's own, on the session's cluster
(tests/kube/fixtures.py): its pods run the session's serving image on the real node, and
clients reach them through the Gateway, served by Traefik (tests/kube/gateway.py).

What a 2-core machine forces on the manifests, and nothing else, is patched (`render`): each
server pod requests 100m of CPU instead of 1 (three pods of a rollout would need 3 cores),
production runs 2 replicas instead of 3 (the Deployment and the HPA's floor), and a rollout
that cannot progress fails after PROGRESS_DEADLINE seconds instead of ten minutes. GKE's
own resources (PodMonitoring, Rules, HealthCheckPolicy) have no CRDs here and are left out;
the Gateway's listeners are plain HTTP on Traefik's ports (gateway_for_traefik)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, hermetic_env
from tests.kube.cluster import CACHE, Cluster
from tests.kube.fixtures import Images
from tests.kube.gateway import DataPlane, Listeners, gateway_for_traefik, traefik
from tests.prometheus.conftest import prometheus  # noqa: F401 (the canary tests' fixture)

pytestmark = pytest.mark.kube
# seconds without progress before a rollout counts as failed: long enough for a healthy pod
# to start while the suite's other process builds images (20 s was not, once)
PROGRESS_DEADLINE = 40
SERVER_CPU = "100m"
GKE_ONLY = ("PodMonitoring", "Rules", "HealthCheckPolicy")


@dataclass(frozen=True)
class App:
    """The app's manifests in a namespace: an overlay, as its admin applies it."""

    cluster: Cluster
    namespace: str
    deployer: Path  # kubeconfig of the CI deployer (RBAC: k8s/components/deployer)
    gateway: DataPlane  # where clients reach the app

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", self.namespace, *args, check=check)

    def image(self, deployment: str = "mlship") -> str:
        return self.kubectl(
            "get",
            f"deployment/{deployment}",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ).stdout

    def pods(self, selector: str = "app.kubernetes.io/component=server") -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json.loads(
            self.kubectl("get", "pods", "-l", selector, "-o", "json").stdout
        )["items"]
        return found

    def env(self) -> dict[str, str]:
        """A process environment that runs kubectl as the CI deployer in this namespace."""
        return hermetic_env() | self.cluster.env(self.deployer)


def render(
    overlay: str, namespace: str, image: str, listeners: Listeners | None = None
) -> list[dict[str, Any]]:
    """The overlay rendered by kubectl's kustomize, in `namespace`, on `image`, with what a
    2-core machine forces patched, and with `listeners` the Gateway as Traefik serves it
    (the module's docstring)."""
    done = subprocess.run(
        [str(CACHE / "kubectl"), "kustomize", str(REPO / "k8s" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    documents = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] not in GKE_ONLY]
    for document in documents:
        document["metadata"]["namespace"] = namespace
        for subject in document.get("subjects", []):  # the RoleBinding's service account
            subject["namespace"] = namespace
        spec = document.get("spec", {})
        if document["kind"] == "Deployment":
            spec["progressDeadlineSeconds"] = PROGRESS_DEADLINE
            spec["replicas"] = min(spec["replicas"], 2)
            server = spec["template"]["spec"]["containers"][0]
            server["image"] = image
            server["resources"]["requests"]["cpu"] = SERVER_CPU
        if document["kind"] == "HorizontalPodAutoscaler":
            spec["minReplicas"] = min(spec["minReplicas"], 2)
        if listeners is not None:
            gateway_for_traefik(document, listeners)
    return documents


@contextmanager
def app_in(
    cluster: Cluster, overlay: str, namespace: str, image: str, trusted_keys: Path
) -> Iterator[App]:
    """The overlay applied by its admin in `namespace`, running `image`, every replica
    Ready, its Gateway served; the servers trust `trusted_keys` (the ConfigMap
    docs/kubernetes.md has the admin create). The namespace is deleted after."""
    cluster.kubectl("create", "namespace", namespace)
    try:
        cluster.kubectl(
            "-n",
            namespace,
            "create",
            "configmap",
            "mlship-trusted-keys",
            f"--from-file=keys.pem={trusted_keys}",
        )
        listeners = Listeners.free()
        cluster.apply(yaml.safe_dump_all(render(overlay, namespace, image, listeners)))
        cluster.kubectl("-n", namespace, "rollout", "status", "deployment/mlship", "--timeout=180s")
        deployer = cluster.service_account_config(namespace, "mlship-deployer")
        with traefik(cluster, namespace, listeners) as gateway:
            yield App(cluster, namespace, deployer, gateway)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


@contextmanager
def staging_app(cluster: Cluster, images: Images) -> Iterator[App]:
    """The staging overlay in a namespace of its own, on the running image."""
    namespace = f"mlship-{uuid.uuid4().hex[:8]}"
    with app_in(
        cluster, "overlays/staging", namespace, str(images.running), images.trusted_keys
    ) as app:
        yield app


@pytest.fixture
def app(cluster: Cluster, gateway_api: None, images: Images) -> Iterator[App]:
    with staging_app(cluster, images) as found:
        yield found

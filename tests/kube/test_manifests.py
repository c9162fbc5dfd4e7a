"""Every rendered overlay and component applied to the real API server: first a server-side
dry run (the server's own validation and admission), then for real. The Gateway API's CRDs
are its published ones (the Gateway as GKE gets it: its class, HTTPS with a certificate);
GKE's own objects (PodMonitoring, Rules, HealthCheckPolicy) and the Prometheus operator's
(ServiceMonitor, PrometheusRule) have no CRD here and are left out, by kind.
The server also refuses what a schema alone lets through. The Deployments are applied with
no replicas: what their pods do on the node is tested by tests/kube/test_deploy.py."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.kube.cluster import Cluster
from tests.kube.conftest import render

pytestmark = pytest.mark.kube
NO_CRD_HERE = {"PodMonitoring", "Rules", "ServiceMonitor", "PrometheusRule"}
IMAGE = "127.0.0.1:5001/mlship:0123456789ab-m1"  # never pulled: no replicas
VARIANTS = {  # name -> (overlay or base, components)
    "base": "base",
    "staging": "overlays/staging",
    "production": "overlays/production",
    "gpu": "components/gpu",
    "batch": "components/batch",
    "deployer": "components/deployer",
}


def _documents(cluster: Cluster, variant: str, namespace: str) -> list[dict[str, Any]]:
    path = VARIANTS[variant]
    if path.startswith("components/"):  # a component is rendered on top of the base
        folder = cluster.folder / f"render-{variant}-{namespace}"
        folder.mkdir()
        k8s = os.path.relpath(REPO / "k8s", folder)  # kustomize loads only relative paths
        (folder / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [f"{k8s}/base"],
                    "components": [f"{k8s}/{path}"],
                }
            )
        )
        documents = render(os.path.relpath(folder, REPO / "k8s"), namespace, IMAGE)
    else:
        documents = render(path, namespace, IMAGE)
    for document in documents:
        if document["kind"] == "Deployment":
            document["spec"]["replicas"] = 0
    return [d for d in documents if d["kind"] not in NO_CRD_HERE]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_api_server_accepts_every_rendered_variant(
    cluster: Cluster, gateway_api: None, variant: str
) -> None:
    namespace = f"render-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        manifest = yaml.safe_dump_all(_documents(cluster, variant, namespace))
        dry = cluster.apply(manifest, "--dry-run=server")
        assert "(server dry run)" in dry.stdout
        applied = cluster.apply(manifest)
        kinds = {line.split("/")[0] for line in applied.stdout.splitlines()}
        assert "deployment.apps" in kinds or "cronjob.batch" in kinds, applied.stdout
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


REFUSED = [
    (
        "PodDisruptionBudget",
        {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"a": "b"}}},
        "minAvailable",
    ),
    (
        "HorizontalPodAutoscaler",
        {
            "minReplicas": 0,
            "maxReplicas": 2,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mlship"},
        },
        "zero replicas",
    ),
    (
        "NetworkPolicy",
        {"podSelector": {}, "ingress": [{"ports": [{"protocol": "TCPX", "port": 8000}]}]},
        "TCPX",
    ),
]
API = {
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "NetworkPolicy": "networking.k8s.io/v1",
}


@pytest.mark.parametrize(("kind", "spec", "named"), REFUSED, ids=[r[0] for r in REFUSED])
def test_the_api_server_refuses_what_a_schema_lets_through(
    cluster: Cluster, kind: str, spec: dict[str, Any], named: str
) -> None:
    manifest = yaml.safe_dump(
        {
            "apiVersion": API[kind],
            "kind": kind,
            "metadata": {"name": "bad", "namespace": "default"},
            "spec": spec,
        }
    )
    done = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert done.returncode != 0 and named in done.stderr, done.stderr

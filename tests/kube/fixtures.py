"""The session's one real control plane (tests/kube/cluster.py), the pod server every Ready
pod's address leads to, and Istio's CRDs: shared by tests/kube and tests/e2e. A plugin
(tests/conftest.py's pytest_plugins), not conftest fixtures imported twice: those would be
two definitions, so two clusters and two pod servers running side by side for the rest of
the session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from mlship.pipeline.artifacts import save_model
from mlship.pipeline.train import fit
from tests.conftest import hermetic_env, make_params, text_frame
from tests.kube.cluster import CACHE, POD_IP, Cluster, ensure_built, pod_network, start, until
from tests.processes import running
from tests.serving.conftest import card_for
from tests.tools import unavailable


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        ensure_built()
    except (OSError, subprocess.CalledProcessError) as error:
        unavailable(f"the Kubernetes binaries cannot be built (tests/kube/build.sh): {error}")
    if os.geteuid() != 0:
        unavailable("the pods' network namespace needs root")
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

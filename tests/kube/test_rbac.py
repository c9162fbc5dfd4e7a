"""The CI deployer's identity (k8s/components/deployer), asked of the real authorizer (RBAC):
it may set the image of its own Deployment, read the rollout, undo it, patch the canary's
weights and smoke-test through the Service — and nothing more."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kube.cluster import Cluster
from tests.kube.conftest import App, staging_app
from tests.kube.fixtures import Images

pytestmark = pytest.mark.kube

ALLOWED = [
    ("patch", "deployments/mlship"),
    ("get", "deployments/mlship"),
    ("patch", "deployments/mlship-canary"),
    ("delete", "deployments/mlship-canary"),
    ("create", "deployments"),
    ("list", "replicasets"),
    ("watch", "pods"),
    ("patch", "httproutes.gateway.networking.k8s.io/mlship"),
    ("get", "services/mlship:http", "--subresource=proxy"),
    ("create", "services/mlship:http", "--subresource=proxy"),
    ("get", "services/mlship-canary:http", "--subresource=proxy"),
    ("get", "pods", "--subresource=proxy"),  # each new pod's /model
    ("get", "pods", "--subresource=log"),  # why a rollout did not finish
    ("list", "events"),
]
DENIED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "pods"),
    ("create", "pods", "--subresource=exec"),
    ("create", "pods", "--subresource=proxy"),
    ("delete", "events"),
    ("patch", "deployments/another-app"),
    ("delete", "deployments/mlship"),
    ("patch", "httproutes.gateway.networking.k8s.io/another-route"),
    ("delete", "httproutes.gateway.networking.k8s.io/mlship"),
    ("patch", "gateways.gateway.networking.k8s.io/mlship"),
    ("get", "services/another-app:http", "--subresource=proxy"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("patch", "roles.rbac.authorization.k8s.io/mlship-deployer"),
    ("delete", "namespaces"),
    ("patch", "deployments/mlship", "--namespace=kube-system"),
    ("get", "secrets", "--namespace=kube-system"),
]


@pytest.fixture(scope="module")
def app(cluster: Cluster, gateway_api: None, images: Images) -> Iterator[App]:
    """One namespace for the module: the questions change nothing (the last test, which
    rolls the Deployment, runs last)."""
    with staging_app(cluster, images) as found:
        yield found


def _can(app: App, *question: str) -> bool:
    done = app.cluster.kubectl(
        f"--namespace={app.namespace}", "auth", "can-i", *question, config=app.deployer, check=False
    )
    return done.stdout.strip() == "yes"


@pytest.mark.parametrize("question", ALLOWED, ids=" ".join)
def test_the_deployer_may_do_its_job(app: App, question: tuple[str, ...]) -> None:
    assert _can(app, *question)


@pytest.mark.parametrize("question", DENIED, ids=" ".join)
def test_the_deployer_may_do_nothing_more(app: App, question: tuple[str, ...]) -> None:
    # a --namespace in the question wins over the one _can sets first
    assert not _can(app, *question)


def test_set_image_rollout_status_history_and_undo_as_the_deployer(
    app: App, images: Images
) -> None:
    def as_deployer(*args: str) -> str:
        return app.cluster.kubectl(
            f"--namespace={app.namespace}", *args, config=app.deployer
        ).stdout

    as_deployer("set", "image", "deployment/mlship", f"server={images.next}")
    as_deployer("rollout", "status", "deployment/mlship", "--timeout=60s")
    assert "2 " in as_deployer("rollout", "history", "deployment/mlship")
    as_deployer("rollout", "undo", "deployment/mlship")
    as_deployer("rollout", "status", "deployment/mlship", "--timeout=60s")
    assert app.image() == str(images.running)
    refused = app.cluster.kubectl(
        "--namespace", app.namespace, "get", "secrets", config=app.deployer, check=False
    )
    assert refused.returncode != 0 and "forbidden" in refused.stderr

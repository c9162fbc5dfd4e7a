"""The canary against the real cluster, as the CI deployer: a one-replica canary Deployment
of real pods next to stable, the weights moved through Istio's own VirtualService CRD and
read back from it, stable promoted only after every step passed, and all traffic back on
stable after a failed analysis — read from the cluster, not from what mlship meant to do.

Prometheus is a stand-in here (tests/fake_api.py answering scripted values): no mesh routes
by these weights here, so the figures are scripted; tests/kube/test_canary_prometheus.py
runs the same queries against a real Prometheus scraping real servers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from mlship.ship.rollout import (
    CanaryBudget,
    DeployReport,
    Kubectl,
    Prometheus,
    Target,
    canary_deploy,
    read_weights,
)
from tests.fake_api import Answer, Request, fake_api
from tests.kube.cluster import until
from tests.kube.conftest import App
from tests.kube.fixtures import Images

pytestmark = pytest.mark.kube
BUDGET = CanaryBudget(max_error_ratio=0.01, max_p99_ms=250, settle_seconds=0)


class FakePrometheus:
    """Answers the canary's error-ratio and p99 queries from scripted values, one per step,
    and records the VirtualService's weights at each query: what traffic the step had."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.errors: list[float | None] = [0.0, 0.0, 0.0]
        self.p99_seconds: list[float | None] = [0.02, 0.02, 0.02]
        self.weights: list[tuple[int, int] | str] = []
        self.failure: tuple[int, Any] | None = None  # answered from the third query on
        self.url = ""
        self.queries = 0
        self.before_answer: Callable[[int], None] = lambda count: None  # a test's hook

    def answer(self, request: Request) -> Answer:
        query = parse_qs(urlparse(request.path).query)["query"][0]
        self.queries += 1
        self.before_answer(self.queries)
        if "histogram_quantile" not in query:  # once per step: what the cluster routes now
            target = Target(self.app.namespace)
            self.weights.append(read_weights(Kubectl(target.namespace), target))
        if self.failure is not None and self.queries > 2:
            return self.failure[0], self.failure[1], {}
        series = self.p99_seconds if "histogram_quantile" in query else self.errors
        value = series.pop(0) if series else None
        result = [] if value is None else [{"metric": {}, "value": [0, str(value)]}]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}, {}


@pytest.fixture
def prometheus(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePrometheus]:
    for name, value in app.env().items():  # kubectl as the CI deployer, in-process
        if name in ("KUBECONFIG", "PATH"):
            monkeypatch.setenv(name, value)
    fake = FakePrometheus(app)
    with fake_api(fake.answer) as api:
        fake.url = api.url
        yield fake


def _canary(app: App, prometheus: FakePrometheus, image: str) -> DeployReport:
    target = Target(app.namespace)
    return canary_deploy(
        Kubectl(target.namespace),
        target,
        "staging",
        image,
        "1",
        Prometheus(prometheus.url),
        BUDGET,
        40,
    )


def _deployer_can(app: App, *question: str) -> bool:
    done = app.cluster.kubectl(
        f"--namespace={app.namespace}", "auth", "can-i", *question, config=app.deployer, check=False
    )
    return done.stdout.strip() == "yes"


def _istio_rule(app: App) -> int:
    """The index of the deployer role's rule on Istio's VirtualService."""
    role = json.loads(app.kubectl("get", "role/mlship-deployer", "-o", "json").stdout)
    groups = [rule["apiGroups"] for rule in role["rules"]]
    return groups.index(["networking.istio.io"])


def _canary_exists(app: App) -> bool:
    return app.kubectl("get", "deployment/mlship-canary", check=False).returncode == 0


def test_healthy_steps_move_the_weights_and_promote_the_image(
    app: App, prometheus: FakePrometheus, images: Images
) -> None:
    report = _canary(app, prometheus, str(images.next))
    assert report.ok, report.markdown()
    # each step's traffic, read from the VirtualService while Prometheus was asked
    assert prometheus.weights == [(90, 10), (50, 50), (0, 100)]
    target = Target(app.namespace)
    assert read_weights(Kubectl(target.namespace), target) == (100, 0)
    assert app.image() == str(images.next) and not _canary_exists(app)


def test_a_breach_at_50_percent_returns_all_traffic_to_stable(
    app: App, prometheus: FakePrometheus, images: Images
) -> None:
    prometheus.errors = [0.0, 0.2]
    report = _canary(app, prometheus, str(images.next))
    assert not report.ok and report.rolled_back
    assert prometheus.weights == [(90, 10), (50, 50)]
    target = Target(app.namespace)
    assert read_weights(Kubectl(target.namespace), target) == (100, 0)
    assert app.image() == str(images.running) and not _canary_exists(app)  # stable never changed
    failed = [s for s in report.steps if not s.ok]
    assert [s.name for s in failed] == ["canary 50%"] and "error ratio 0.2000" in failed[0].detail


def test_prometheus_failing_mid_rollout_ends_cleaned_up_on_stable(
    app: App, prometheus: FakePrometheus, images: Images
) -> None:
    prometheus.failure = (500, {"status": "error"})
    report = _canary(app, prometheus, str(images.next))
    assert report.rolled_back and not report.ok
    failed = next(s for s in report.steps if not s.ok)
    assert failed.name == "canary 50%" and "cannot judge" in failed.detail
    assert app.image() == str(images.running) and not _canary_exists(app)


def test_a_canary_that_never_turns_ready_is_removed_before_any_traffic(
    app: App, prometheus: FakePrometheus, images: Images
) -> None:
    report = _canary(app, prometheus, str(images.never_ready))
    assert report.rolled_back and prometheus.weights == []
    assert [s.name for s in report.steps if not s.ok] == ["canary rollout"]
    assert app.image() == str(images.running) and not _canary_exists(app)


def test_weights_that_cannot_be_moved_back_keep_the_canary_and_claim_no_rollback(
    app: App, prometheus: FakePrometheus, images: Images
) -> None:
    """The deployer loses its right to patch the VirtualService after a breach at 50%: the
    canary keeps its pods (half the traffic still goes there) and no rollback is claimed."""
    prometheus.errors = [0.0, 0.2]

    def revoke_at_the_50_percent_step(count: int) -> None:
        if count != 3:  # the 50% step's error ratio: the breach about to be read
            return
        app.kubectl(
            "patch",
            "role/mlship-deployer",
            "--type=json",
            "-p",
            f'[{{"op": "remove", "path": "/rules/{_istio_rule(app)}"}}]',
        )
        until(
            lambda: not _deployer_can(app, "patch", "virtualservices.networking.istio.io/mlship"),
            "the deployer's right to patch the VirtualService revoked",
            app.cluster,
            timeout=5,
        )

    prometheus.before_answer = revoke_at_the_50_percent_step
    report = _canary(app, prometheus, str(images.next))
    assert not report.ok and not report.rolled_back
    kept = next(s for s in report.steps if s.name == "all traffic to stable")
    assert not kept.ok and "the canary is kept" in kept.detail and "forbidden" in kept.detail
    weights = app.kubectl(
        "get", "virtualservice/mlship", "-o", "jsonpath={.spec.http[0].route[*].weight}"
    ).stdout
    assert weights == "50 50" and _canary_exists(app) and app.image() == str(images.running)
    assert "ROLLED BACK" not in report.markdown()


def test_the_cluster_is_reached_as_the_deployer(app: App, prometheus: FakePrometheus) -> None:
    """What the canary did, it did with the CI deployer's rights (k8s/components/deployer)."""
    assert os.environ["KUBECONFIG"] == str(app.deployer)
    who = app.cluster.kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", config=app.deployer
    ).stdout
    assert who == f"system:serviceaccount:{app.namespace}:mlship-deployer"

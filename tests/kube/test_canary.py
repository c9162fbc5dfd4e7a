"""The canary against the real cluster, as the CI deployer: a one-replica canary Deployment
of real pods next to stable, the weights moved on the Gateway API's HTTPRoute and obeyed by
a real data plane (Traefik: at each step, real requests through the Gateway go to each
track in the proportion the weights say, by a binomial test), stable promoted at its full
size only after every step passed, and all traffic back on stable after a failed analysis
— read from the cluster and from the requests, not from what mlship meant to do.

Prometheus is a stand-in here (tests/fake_api.py answering scripted values), so that each
verdict is the one a test wants; tests/kube/test_canary_prometheus.py judges real traffic
with a real Prometheus scraping the pods."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from scipy.stats import binomtest

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
from tests.kube.fixtures import Images, ServedImage
from tests.kube.gateway import answered_by
from tests.kube.images import Reference

pytestmark = pytest.mark.kube
# the data plane takes up a new weight within a second (tests/kube/gateway.py)
BUDGET = CanaryBudget(max_error_ratio=0.01, max_p99_ms=250, settle_seconds=1.5)


# requests sent through the Gateway at each step; at 10 % a share off by 5 points is
# refused by the binomial test below (p < 0.001), so a data plane ignoring the weights fails
REQUESTS_PER_STEP = 300


class FakePrometheus:
    """Answers the canary's error-ratio and p99 queries from scripted values, one per step,
    and records at each step the HTTPRoute's weights and which model version answered the
    requests sent through the Gateway: what traffic the step had."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.errors: list[float | None] = [0.0, 0.0, 0.0]
        self.p99_seconds: list[float | None] = [0.02, 0.02, 0.02]
        self.weights: list[tuple[int, int] | str] = []
        self.answered: list[dict[str, int]] = []  # model version -> requests, at each step
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
            self.answered.append(answered_by(self.app.gateway.url, REQUESTS_PER_STEP))
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


def _canary(
    app: App, prometheus: FakePrometheus, image: Reference, served_image: ServedImage
) -> DeployReport:
    target = Target(app.namespace)
    return canary_deploy(
        Kubectl(target.namespace),
        target,
        "staging",
        str(image),
        image.tag.rsplit("-m", 1)[1],
        served_image.card["example"],
        Prometheus(prometheus.url),
        BUDGET,
        40,
    )


def _obeyed(weights: tuple[int, int] | str, answered: dict[str, int]) -> None:
    """The requests of one step split as its weights say: the canary's share (version 2)
    is not refused by a two-sided binomial test at the 0.1 % level."""
    assert isinstance(weights, tuple), weights
    canary = answered.get("2", 0)
    assert answered.keys() <= {"1", "2"} and sum(answered.values()) == REQUESTS_PER_STEP
    share = binomtest(canary, REQUESTS_PER_STEP, weights[1] / 100)
    assert share.pvalue > 0.001, (weights, answered)


def _deployer_can(app: App, *question: str) -> bool:
    done = app.cluster.kubectl(
        f"--namespace={app.namespace}", "auth", "can-i", *question, config=app.deployer, check=False
    )
    return done.stdout.strip() == "yes"


def _route_rule(app: App) -> int:
    """The index of the deployer role's rule on the HTTPRoute."""
    role = json.loads(app.kubectl("get", "role/mlship-deployer", "-o", "json").stdout)
    groups = [rule["apiGroups"] for rule in role["rules"]]
    return groups.index(["gateway.networking.k8s.io"])


def _canary_exists(app: App) -> bool:
    return app.kubectl("get", "deployment/mlship-canary", check=False).returncode == 0


def test_real_requests_follow_each_steps_weights_then_stable_is_promoted_at_full_size(
    app: App, prometheus: FakePrometheus, images: Images, served_image: ServedImage
) -> None:
    report = _canary(app, prometheus, images.second, served_image)
    assert report.ok, report.markdown()
    # each step's traffic, read from the HTTPRoute while Prometheus was asked, and obeyed
    assert prometheus.weights == [(90, 10), (50, 50)]
    for weights, answered in zip(prometheus.weights, prometheus.answered, strict=True):
        _obeyed(weights, answered)
    print(f"\nanswered through the Gateway at 10 % and 50 %: {prometheus.answered}")
    smoke = next(s for s in report.steps if s.name == "canary smoke")
    assert "/model on each new pod (1)" in smoke.detail
    # stable took the image at its full size, then all traffic went back to it
    target = Target(app.namespace)
    assert read_weights(Kubectl(target.namespace), target) == (100, 0)
    assert app.image() == str(images.second) and not _canary_exists(app)
    ready = app.kubectl("get", "deployment/mlship", "-o", "jsonpath={.status.readyReplicas}")
    assert ready.stdout == "2"
    time.sleep(BUDGET.settle_seconds)  # the data plane takes up the last weights
    assert answered_by(app.gateway.url, 50) == {"2": 50}


def test_a_breach_at_50_percent_returns_all_traffic_to_stable(
    app: App, prometheus: FakePrometheus, images: Images, served_image: ServedImage
) -> None:
    prometheus.errors = [0.0, 0.2]
    report = _canary(app, prometheus, images.second, served_image)
    assert not report.ok and report.rolled_back
    assert prometheus.weights == [(90, 10), (50, 50)]
    target = Target(app.namespace)
    assert read_weights(Kubectl(target.namespace), target) == (100, 0)
    assert app.image() == str(images.running) and not _canary_exists(app)  # stable never changed
    failed = [s for s in report.steps if not s.ok]
    assert [s.name for s in failed] == ["canary 50%"] and "error ratio 0.2000" in failed[0].detail
    time.sleep(BUDGET.settle_seconds)  # the data plane takes up the last weights
    assert answered_by(app.gateway.url, 50) == {"1": 50}  # the clients see stable alone


def test_prometheus_failing_mid_rollout_ends_cleaned_up_on_stable(
    app: App, prometheus: FakePrometheus, images: Images, served_image: ServedImage
) -> None:
    prometheus.failure = (500, {"status": "error"})
    report = _canary(app, prometheus, images.second, served_image)
    assert report.rolled_back and not report.ok
    failed = next(s for s in report.steps if not s.ok)
    assert failed.name == "canary 50%" and "cannot judge" in failed.detail
    assert app.image() == str(images.running) and not _canary_exists(app)


def test_a_canary_that_never_turns_ready_is_removed_before_any_traffic(
    app: App, prometheus: FakePrometheus, images: Images, served_image: ServedImage
) -> None:
    report = _canary(app, prometheus, images.never_ready, served_image)
    assert report.rolled_back and prometheus.weights == []
    failed = [s for s in report.steps if not s.ok]
    assert [s.name for s in failed] == ["canary rollout", "diagnose"]
    assert "Readiness probe failed" in failed[1].detail
    assert app.image() == str(images.running) and not _canary_exists(app)


def test_a_canary_serving_another_version_than_its_tag_gets_no_traffic(
    app: App, prometheus: FakePrometheus, images: Images, served_image: ServedImage
) -> None:
    """The canary's own pods are asked for /model before any weight moves."""
    report = _canary(app, prometheus, images.wrong_version, served_image)
    assert report.rolled_back and prometheus.weights == []
    failed = next(s for s in report.steps if not s.ok)
    assert failed.name == "canary smoke" and "serves version 1, expected 2" in failed.detail
    assert not _canary_exists(app)


def test_weights_that_cannot_be_moved_back_keep_the_canary_and_claim_no_rollback(
    app: App, prometheus: FakePrometheus, images: Images, served_image: ServedImage
) -> None:
    """The deployer loses its right to patch the HTTPRoute after a breach at 50%: the canary
    keeps its pods (half the traffic still goes there) and no rollback is claimed."""
    prometheus.errors = [0.0, 0.2]

    def revoke_at_the_50_percent_step(count: int) -> None:
        if count != 3:  # the 50% step's error ratio: the breach about to be read
            return
        app.kubectl(
            "patch",
            "role/mlship-deployer",
            "--type=json",
            "-p",
            f'[{{"op": "remove", "path": "/rules/{_route_rule(app)}"}}]',
        )
        until(
            lambda: not _deployer_can(app, "patch", "httproutes.gateway.networking.k8s.io/mlship"),
            "the deployer's right to patch the HTTPRoute revoked",
            app.cluster,
            timeout=5,
        )

    prometheus.before_answer = revoke_at_the_50_percent_step
    report = _canary(app, prometheus, images.second, served_image)
    assert not report.ok and not report.rolled_back
    kept = next(s for s in report.steps if s.name == "all traffic to stable")
    assert not kept.ok and "the canary is kept" in kept.detail and "forbidden" in kept.detail
    weights = app.kubectl(
        "get", "httproute/mlship", "-o", "jsonpath={.spec.rules[0].backendRefs[*].weight}"
    ).stdout
    assert weights == "50 50" and _canary_exists(app) and app.image() == str(images.running)
    assert "ROLLED BACK" not in report.markdown()
    assert set(answered_by(app.gateway.url, 100)) == {"1", "2"}  # and both still answer


def test_the_cluster_is_reached_as_the_deployer(app: App, prometheus: FakePrometheus) -> None:
    """What the canary did, it did with the CI deployer's rights (k8s/components/deployer)."""
    assert os.environ["KUBECONFIG"] == str(app.deployer)
    who = app.cluster.kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", config=app.deployer
    ).stdout
    assert who == f"system:serviceaccount:{app.namespace}:mlship-deployer"

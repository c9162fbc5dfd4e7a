"""The canary against the real cluster, as the CI deployer: a one-replica canary Deployment
of real pods next to stable, the weights moved on the Gateway API's HTTPRoute and obeyed by
a real data plane (Traefik: at each step, real requests through the Gateway go to each
track in the proportion the weights say, by a binomial test), stable promoted at its full
size only after every step passed, and all traffic back on stable after a failed analysis
— read from the cluster and from the requests, not from what mlship meant to do.

Each step's analysis is scripted here, so that each verdict is the one a test wants;
tests/kube/test_canary_prometheus.py judges real traffic with a real Prometheus scraping the
pods."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator

import pytest
from scipy.stats import binomtest

from mlship.errors import ServiceError
from mlship.ship.canary import Check, Decision, Traffic, Verdict
from mlship.ship.rollout import (
    DeployReport,
    Kubectl,
    Target,
    canary_deploy,
    read_weights,
)
from tests.kube.cluster import until
from tests.kube.conftest import App
from tests.kube.fixtures import Images, ServedImage
from tests.kube.gateway import answered_by
from tests.kube.images import Reference

pytestmark = pytest.mark.kube
# the data plane takes up a new weight within a second (tests/kube/gateway.py)
SETTLE_SECONDS = 1.5


# requests sent through the Gateway at each step; at 10 % a share off by 5 points is
# refused by the binomial test below (p < 0.001), so a data plane ignoring the weights fails
REQUESTS_PER_STEP = 300


class ScriptedAnalysis:
    """Each step's verdict from a script, and a record of the step's traffic: the
    HTTPRoute's weights and which model version answered the requests sent through the
    Gateway while the step was being judged."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.decisions: list[Decision] = ["promote", "promote"]
        self.weights: list[tuple[int, int] | str] = []
        self.answered: list[dict[str, int]] = []  # model version -> requests, at each step
        self.fails_from_step: int | None = None  # the analysis cannot read its figures
        self.before_verdict: Callable[[int], None] = lambda step: None  # a test's hook

    def __call__(self) -> Verdict:
        time.sleep(SETTLE_SECONDS)
        target = Target(self.app.namespace)
        self.weights.append(read_weights(Kubectl(target.namespace), target))
        self.answered.append(answered_by(self.app.gateway.url, REQUESTS_PER_STEP))
        step = len(self.weights)
        self.before_verdict(step)
        if self.fails_from_step is not None and step >= self.fails_from_step:
            raise ServiceError("Prometheus at http://127.0.0.1:9: 500 Internal Server Error")
        decision = self.decisions[step - 1]
        state = "beyond" if decision == "abort" else "within"
        check = Check("errors", state, "scripted")
        return Verdict(decision, (check,), Traffic(), Traffic(), SETTLE_SECONDS)


@pytest.fixture
def analysis(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedAnalysis]:
    for name, value in app.env().items():  # kubectl as the CI deployer, in-process
        if name in ("KUBECONFIG", "PATH"):
            monkeypatch.setenv(name, value)
    yield ScriptedAnalysis(app)


def _canary(
    app: App, analysis: ScriptedAnalysis, image: Reference, served_image: ServedImage
) -> DeployReport:
    target = Target(app.namespace)
    return canary_deploy(
        Kubectl(target.namespace),
        target,
        "staging",
        str(image),
        image.tag.rsplit("-m", 1)[1],
        served_image.card["example"],
        analysis,
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
    app: App, analysis: ScriptedAnalysis, images: Images, served_image: ServedImage
) -> None:
    report = _canary(app, analysis, images.second, served_image)
    assert report.ok, report.markdown()
    # each step's traffic, read from the HTTPRoute while the step was judged, and obeyed
    assert analysis.weights == [(90, 10), (50, 50)]
    for weights, answered in zip(analysis.weights, analysis.answered, strict=True):
        _obeyed(weights, answered)
    print(f"\nanswered through the Gateway at 10 % and 50 %: {analysis.answered}")
    smoke = next(s for s in report.steps if s.name == "canary smoke")
    assert "/model on each new pod (1)" in smoke.detail
    # stable took the image at its full size, then all traffic went back to it
    target = Target(app.namespace)
    assert read_weights(Kubectl(target.namespace), target) == (100, 0)
    assert app.image() == str(images.second) and not _canary_exists(app)
    ready = app.kubectl("get", "deployment/mlship", "-o", "jsonpath={.status.readyReplicas}")
    assert ready.stdout == "2"
    time.sleep(SETTLE_SECONDS)  # the data plane takes up the last weights
    assert answered_by(app.gateway.url, 50) == {"2": 50}


def test_a_breach_at_50_percent_returns_all_traffic_to_stable(
    app: App, analysis: ScriptedAnalysis, images: Images, served_image: ServedImage
) -> None:
    analysis.decisions = ["promote", "abort"]
    report = _canary(app, analysis, images.second, served_image)
    assert not report.ok and report.rolled_back
    assert analysis.weights == [(90, 10), (50, 50)]
    target = Target(app.namespace)
    assert read_weights(Kubectl(target.namespace), target) == (100, 0)
    assert app.image() == str(images.running) and not _canary_exists(app)  # stable never changed
    failed = [s for s in report.steps if not s.ok]
    assert [s.name for s in failed] == ["canary 50%"] and failed[0].detail.startswith("abort")
    time.sleep(SETTLE_SECONDS)  # the data plane takes up the last weights
    assert answered_by(app.gateway.url, 50) == {"1": 50}  # the clients see stable alone


def test_prometheus_failing_mid_rollout_ends_cleaned_up_on_stable(
    app: App, analysis: ScriptedAnalysis, images: Images, served_image: ServedImage
) -> None:
    analysis.fails_from_step = 2
    report = _canary(app, analysis, images.second, served_image)
    assert report.rolled_back and not report.ok
    failed = next(s for s in report.steps if not s.ok)
    assert failed.name == "canary 50%" and "cannot judge" in failed.detail
    assert app.image() == str(images.running) and not _canary_exists(app)


def test_a_canary_that_never_turns_ready_is_removed_before_any_traffic(
    app: App, analysis: ScriptedAnalysis, images: Images, served_image: ServedImage
) -> None:
    report = _canary(app, analysis, images.never_ready, served_image)
    assert report.rolled_back and analysis.weights == []
    failed = [s for s in report.steps if not s.ok]
    assert [s.name for s in failed] == ["canary rollout", "diagnose"]
    assert "Readiness probe failed" in failed[1].detail
    assert app.image() == str(images.running) and not _canary_exists(app)


def test_a_canary_serving_another_version_than_its_tag_gets_no_traffic(
    app: App, analysis: ScriptedAnalysis, images: Images, served_image: ServedImage
) -> None:
    """The canary's own pods are asked for /model before any weight moves."""
    report = _canary(app, analysis, images.wrong_version, served_image)
    assert report.rolled_back and analysis.weights == []
    failed = next(s for s in report.steps if not s.ok)
    assert failed.name == "canary smoke" and "serves version 1, expected 2" in failed.detail
    assert not _canary_exists(app)


def test_weights_that_cannot_be_moved_back_keep_the_canary_and_claim_no_rollback(
    app: App, analysis: ScriptedAnalysis, images: Images, served_image: ServedImage
) -> None:
    """The deployer loses its right to patch the HTTPRoute after a breach at 50%: the canary
    keeps its pods (half the traffic still goes there) and no rollback is claimed."""
    analysis.decisions = ["promote", "abort"]

    def revoke_at_the_50_percent_step(step: int) -> None:
        if step != 2:  # the 50% step: the breach about to be judged
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

    analysis.before_verdict = revoke_at_the_50_percent_step
    report = _canary(app, analysis, images.second, served_image)
    assert not report.ok and not report.rolled_back
    kept = next(s for s in report.steps if s.name == "all traffic to stable")
    assert not kept.ok and "the canary is kept" in kept.detail and "forbidden" in kept.detail
    weights = app.kubectl(
        "get", "httproute/mlship", "-o", "jsonpath={.spec.rules[0].backendRefs[*].weight}"
    ).stdout
    assert weights == "50 50" and _canary_exists(app) and app.image() == str(images.running)
    assert "ROLLED BACK" not in report.markdown()
    assert set(answered_by(app.gateway.url, 100)) == {"1", "2"}  # and both still answer


def test_the_cluster_is_reached_as_the_deployer(app: App, analysis: ScriptedAnalysis) -> None:
    """What the canary did, it did with the CI deployer's rights (k8s/components/deployer)."""
    assert os.environ["KUBECONFIG"] == str(app.deployer)
    who = app.cluster.kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", config=app.deployer
    ).stdout
    assert who == f"system:serviceaccount:{app.namespace}:mlship-deployer"

"""Canary stepping against a fake kubectl and a fake Prometheus on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
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
    canary_manifest,
    judge_canary,
)
from tests.fake_api import Answer, Request, fake_api
from tests.unit.ship.test_rollout import IMAGE, Cluster

BUDGET = CanaryBudget(max_error_ratio=0.01, max_p99_ms=250, settle_seconds=0)


class FakePrometheus:
    """Answers error-ratio and p99 queries from scripted values, one per canary step."""

    def __init__(self) -> None:
        self.errors: list[float | None] = [0.0, 0.0, 0.0]
        self.p99_seconds: list[float | None] = [0.02, 0.02, 0.02]
        self.queries: list[str] = []
        self.url = ""  # set once the fake API listens
        self.failure: tuple[int, Any] | None = None  # answered from the third query on

    def answer(self, request: Request) -> Answer:
        query = parse_qs(urlparse(request.path).query)["query"][0]
        self.queries.append(query)
        if self.failure is not None and len(self.queries) > 2:
            return self.failure[0], self.failure[1], {}
        series = self.p99_seconds if "histogram_quantile" in query else self.errors
        value = series.pop(0) if series else None
        result = [] if value is None else [{"metric": {}, "value": [0, str(value)]}]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}, {}


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    with fake_api(fake.answer) as api:
        fake.url = api.url
        yield fake


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    return Cluster(tmp_path, monkeypatch)


def _canary(cluster: Cluster, prometheus: FakePrometheus, scenario: str = "ok") -> DeployReport:
    cluster.monkeypatch.setenv("FAKE_KUBECTL_SCENARIO", scenario)
    target = Target("mlship-staging")
    return canary_deploy(
        Kubectl(target.namespace),
        target,
        "staging",
        IMAGE,
        "7",
        Prometheus(prometheus.url),
        BUDGET,
        30,
    )


def _state(cluster: Cluster) -> dict[str, Any]:
    return json.loads((cluster.folder / "state.json").read_text())


def test_healthy_steps_promote_the_image_to_stable(
    cluster: Cluster, prometheus: FakePrometheus
) -> None:
    report = _canary(cluster, prometheus)
    assert report.ok, report.markdown()
    state = _state(cluster)
    assert state["weights"] == [[90, 10], [50, 50], [0, 100], [100, 0]]
    assert state["revisions"][-1] == IMAGE and state["canary"] is None
    assert [s.name for s in report.steps][-4:] == [
        "canary 100%",
        "promote to stable",
        "stable rollout",
        "all traffic to stable, canary removed",
    ]
    assert all('pod=~"mlship-canary-.*"' in q for q in prometheus.queries)


def test_a_breach_returns_all_traffic_to_stable(
    cluster: Cluster, prometheus: FakePrometheus
) -> None:
    prometheus.errors = [0.0, 0.2]  # the 50% step fails on errors
    report = _canary(cluster, prometheus)
    assert not report.ok and report.rolled_back
    state = _state(cluster)
    assert state["weights"] == [[90, 10], [50, 50], [100, 0]]
    assert state["revisions"] == ["old"] and state["canary"] is None  # stable never changed
    failed = [s for s in report.steps if not s.ok]
    assert [s.name for s in failed] == ["canary 50%"] and "error ratio 0.2000" in failed[0].detail


def test_slow_canary_and_no_traffic_both_abort(
    cluster: Cluster, prometheus: FakePrometheus
) -> None:
    prometheus.p99_seconds = [0.9]
    report = _canary(cluster, prometheus)
    assert report.rolled_back and "p99 900 ms" in report.steps[2].detail
    prometheus.errors, prometheus.p99_seconds = [None], [None]
    report = _canary(cluster, prometheus)
    assert report.rolled_back and "cannot judge" in report.steps[2].detail


def test_a_canary_failing_every_request_reads_as_errors_not_as_missing_traffic() -> None:
    """Nothing scored means no latency series; the error ratio still decides."""
    assert judge_canary(1.0, None, BUDGET) == (False, "error ratio 1.0000 (max 0.01)")
    passed, why = judge_canary(0.0, None, BUDGET)
    assert not passed and "cannot judge its latency" in why
    no_traffic = (False, "no canary traffic in Prometheus: cannot judge")
    assert judge_canary(None, 0.01, BUDGET) == no_traffic
    assert judge_canary(0.005, 0.02, BUDGET) == (
        True,
        "error ratio 0.0050 (max 0.01), p99 20 ms (max 250)",
    )


def test_a_canary_that_never_rolls_out_is_removed(
    cluster: Cluster, prometheus: FakePrometheus
) -> None:
    report = _canary(cluster, prometheus, "canary-rollout-timeout")
    assert report.rolled_back
    assert _state(cluster)["weights"] == [[100, 0]] and _state(cluster)["canary"] is None


def test_the_canary_manifest_never_overlaps_stable() -> None:
    stable = {
        "metadata": {"name": "mlship", "labels": {"a": "b"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"track": "stable"}},
            "template": {
                "metadata": {"labels": {"track": "stable"}},
                "spec": {"containers": [{"name": "server", "image": "old"}]},
            },
        },
    }
    made = canary_manifest(stable, IMAGE, "server")
    assert made["metadata"]["name"] == "mlship-canary" and made["spec"]["replicas"] == 1
    assert made["spec"]["selector"]["matchLabels"]["track"] == "canary"
    assert made["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "old"  # a copy


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ((500, {"status": "error"}), "HTTPStatusError"),
        (
            (
                200,
                {
                    "status": "success",
                    "data": {"resultType": "vector", "result": [{"value": [0, "abc"]}]},
                },
            ),
            "no number",
        ),
    ],
)
def test_prometheus_failing_mid_rollout_ends_cleaned_up_on_stable(
    cluster: Cluster, prometheus: FakePrometheus, answer: tuple[int, Any], said: str
) -> None:
    # given Prometheus answering an error or a non-number at the 50% step
    prometheus.failure = answer
    report = _canary(cluster, prometheus)
    # then the split and the canary are gone, stable is verified on its recorded image
    state = _state(cluster)
    assert state["weights"][-1] == [100, 0] and state["canary"] is None
    assert state["revisions"] == ["old"] and report.rolled_back and not report.ok
    failed = next(s for s in report.steps if not s.ok)
    assert failed.name == "canary 50%" and "cannot judge" in failed.detail


def test_a_failed_promotion_whose_restore_fails_is_not_called_a_rollback(
    cluster: Cluster, prometheus: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # calls: get, get, apply, rollout, (patch) x3, set image, rollout status (fails), patch,
    # delete, get, then the restoring set image (call 13) fails
    monkeypatch.setenv("FAKE_KUBECTL_FAIL_AT", "13")
    report = _canary(cluster, prometheus, "stable-rollout-fails")
    assert not report.ok and not report.rolled_back
    assert _state(cluster)["revisions"][-1] == IMAGE  # stable runs the new image: say so
    assert report.steps[-1].name == "restore recorded image" and not report.steps[-1].ok
    assert "FAILED" in report.markdown()

"""A canary step's verdict from the two tracks' counters (ship/canary.py): each check with a
known answer, the order of abort/wait/promote, the looks until a verdict, and the Prometheus
adapter on the vectors Prometheus answers."""

from __future__ import annotations

import pytest

from mlship.config.params import CanaryParams
from mlship.serving.metrics import CONFIDENCE_BUCKETS
from mlship.ship.canary import (
    Analysis,
    Pods,
    Tracks,
    Traffic,
    from_prometheus,
    judge,
    read_traffic,
    window,
)

CRITERIA = CanaryParams(min_requests=50)
# 13 buckets: LATENCY_BUCKETS and +Inf; requests in the 2.5-5 ms one
FAST = (0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
SLOW = (0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0)  # 25-50 ms


def traffic(
    requests: int,
    errors: int = 0,
    latency: tuple[int, ...] = FAST,
    confidence: float = 0.9,
    correct: float = 0.0,
    wrong: float = 0.0,
) -> Traffic:
    """`requests` alike: each in the `latency` bucket, answered with `confidence`."""
    served = requests - errors
    bounds = (*CONFIDENCE_BUCKETS, float("inf"))
    at = next(i for i, bound in enumerate(bounds) if confidence <= bound)
    return Traffic(
        requests=requests,
        errors=errors,
        latency=tuple(float(b * served) for b in latency),
        rows=served,
        confidence=confidence * served,
        confidence_buckets=tuple(float(served) if i == at else 0.0 for i in range(len(bounds))),
        confidence_bounds=bounds,
        feedback_correct=correct,
        feedback_wrong=wrong,
    )


def _states(verdict: object) -> dict[str, str]:
    return {c.name: c.state for c in verdict.checks}  # type: ignore[attr-defined]


def test_a_canary_like_stable_is_promoted_once_it_has_its_requests() -> None:
    early = judge(traffic(20), traffic(180), CRITERIA, 10, 0)
    assert early.decision == "wait" and "20 of the 50" in early.why
    verdict = judge(traffic(400), traffic(3600), CRITERIA, 60, 0)
    assert verdict.decision == "promote", verdict
    assert _states(verdict) == {
        "errors": "within",
        "latency": "within",
        "estimated accuracy": "within",
    }


def test_settling_holds_a_clear_promotion() -> None:
    verdict = judge(traffic(400), traffic(3600), CRITERIA, 20, settle_seconds=60)
    assert verdict.decision == "wait" and "settling" in verdict.why


def test_a_few_errors_beyond_its_share_abort_at_once() -> None:
    verdict = judge(traffic(30, errors=3), traffic(270), CRITERIA, 10, 0)
    assert verdict.decision == "abort" and _states(verdict)["errors"] == "beyond"
    assert "3 of 3 errors on 10% of requests" in str(verdict)


def test_errors_as_common_as_stable_s_are_not_the_canary_s_fault() -> None:
    verdict = judge(traffic(3000, errors=30), traffic(27000, errors=270), CRITERIA, 300, 0)
    assert verdict.decision == "promote", verdict


def test_a_slower_canary_is_aborted_on_its_latency() -> None:
    verdict = judge(traffic(60, latency=SLOW), traffic(540), CRITERIA, 30, 0)
    assert verdict.decision == "abort" and _states(verdict)["latency"] == "beyond"


def test_a_less_confident_canary_is_aborted_without_labels() -> None:
    verdict = judge(
        traffic(2000, confidence=0.70), traffic(18000, confidence=0.85), CRITERIA, 60, 0
    )
    assert _states(verdict)["estimated accuracy"] == "beyond" and verdict.decision == "abort"


def test_feedback_accuracy_judges_once_both_tracks_have_labels() -> None:
    few = judge(
        traffic(400, correct=20, wrong=5), traffic(3600, correct=20, wrong=5), CRITERIA, 60, 0
    )
    assert "feedback accuracy" not in _states(few)
    worse = judge(
        traffic(3000, correct=2100, wrong=900),
        traffic(27000, correct=21600, wrong=5400),
        CRITERIA,
        600,
        0,
    )
    assert _states(worse)["feedback accuracy"] == "beyond", worse
    assert worse.decision == "abort"


def test_an_unclear_check_waits_and_the_wait_ends_as_configured() -> None:
    """A canary 1 point less confident than stable: within the 2-point tolerance or beyond
    it cannot be told apart from 72 requests, so the step waits, then ends on_timeout."""
    readings = iter(range(1000))

    def read() -> tuple[Pods, Pods]:
        look = next(readings)
        return {"c": traffic(12 * look, confidence=0.89)}, {"s": traffic(108 * look)}

    clock = iter(float(10 * n) for n in range(1000))
    criteria = CanaryParams(min_requests=50, max_wait_seconds=60, on_timeout="abort")
    analysis = Analysis(criteria, 0, read, sleep=lambda _: None, clock=lambda: next(clock))
    verdict = analysis.run()
    assert verdict.decision == "abort" and "no verdict in 60 s" in verdict.why
    assert [look.decision for look in analysis.looks] == ["wait"] * len(analysis.looks)
    assert len(analysis.looks) == 6


def test_a_counter_reset_counts_from_zero() -> None:
    start, now = traffic(100), traffic(30)  # the pod restarted
    assert now.since(start).requests == 30
    assert traffic(130).since(start).requests == 30


def test_a_window_is_summed_pod_by_pod() -> None:
    """A restarted pod counts from zero; a new pod counts whole; a pod whose series went
    stale (a failed scrape) adds nothing, rather than read as every pod restarting."""
    start = {"a": traffic(100), "b": traffic(50)}
    now = {"a": traffic(130), "b": traffic(20), "c": traffic(5)}  # b restarted, c is new
    assert window(now, start).requests == 30 + 20 + 5
    assert window({"a": traffic(130)}, start).requests == 30  # b missing from this look


def test_the_prometheus_reads_take_each_track_s_pods_at_one_instant() -> None:
    queries: list[str] = []
    buckets = [("0.001", 1.0), ("0.0025", 3.0), ("+Inf", 4.0)]

    def vectors(query: str) -> list[tuple[dict[str, str], float]]:
        queries.append(query)
        if "by (pod, le)" in query:
            return [({"pod": "mlship-1", "le": le}, value) for le, value in buckets]
        if "by (pod, outcome)" in query:
            return [
                ({"pod": "mlship-1", "outcome": "correct"}, 7.0),
                ({"pod": "mlship-1", "outcome": "wrong"}, 2.0),
            ]
        if 'status=~"5.."' in query:
            return []  # no 5xx series yet
        return [({"pod": "mlship-1"}, 4.0)]

    tracks = Tracks("mlship-production", "mlship")
    read = read_traffic(vectors, tracks.stable)["mlship-1"]
    assert read.latency == (1.0, 2.0, 1.0) and read.errors == 0.0 and read.requests == 4.0
    assert (read.feedback_correct, read.feedback_wrong) == (7.0, 2.0)
    assert all('pod!~"mlship-canary-.*"' in q for q in queries)
    assert 'pod=~"mlship-canary-.*"' in tracks.canary
    assert any('route=~"/predict' in q for q in queries)


def test_every_query_of_a_reading_is_evaluated_at_the_same_instant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx

    asked: list[dict[str, str]] = []

    class Answer:
        def raise_for_status(self) -> None:
            pass

        def json(self) -> dict[str, object]:
            return {"data": {"result": []}}

    def get(url: str, params: dict[str, str], timeout: float) -> Answer:
        asked.append(params)
        return Answer()

    monkeypatch.setattr(httpx, "get", get)
    analysis = from_prometheus("http://prometheus:9090", "ns", "mlship", CRITERIA, 0)
    analysis.read()
    assert len(asked) == 14 and len({params["time"] for params in asked}) == 1  # 7 a track


@pytest.mark.parametrize("tolerance", [0.5, 1.0])
def test_the_slower_probability_tolerance_must_mean_worse(tolerance: float) -> None:
    with pytest.raises(ValueError, match="max_slower_probability"):
        CanaryParams(max_slower_probability=tolerance)

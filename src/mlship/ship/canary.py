"""A canary step's verdict — promote, abort or wait — from canary against stable over the
same window, looked at every few seconds with always-valid tests (gate/sequential.py).

The figures come from Prometheus: each track's pods' counters read at the step's start and
at each look, the difference being the step's own traffic. The checks:

- errors: more than its share of the errors aborts (a mixture likelihood ratio, so a few
  errors suffice); promoted when its error ratio is confidently within `max_error_increase`
  of stable's;
- latency: P(a canary request is slower than a stable one), from the latency histograms;
- accuracy estimated without labels (classification with probabilities): the mean
  confidence of each track's answers, what confidence-based performance estimation (CBPE)
  takes as expected accuracy when the model is calibrated;
- accuracy from feedback labels, once both tracks have `min_feedback_rows`: it aborts a
  canary confidently worse, but does not hold a promotion back (labels come late and few:
  proving a 2-point tolerance takes thousands of them).

A check is *beyond* when the canary is confidently worse and its estimate passes the
tolerance (abort), *within* when its bound is inside the tolerance. The step is promoted
when every check that has data is within and the canary has served `min_requests` in at
least `settle_seconds`; with no verdict by `max_wait_seconds`, `on_timeout` decides.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mlship.config.params import CanaryParams
from mlship.errors import InputError, ServiceError
from mlship.gate import sequential

Decision = Literal["promote", "abort", "wait"]
SCORED_ROUTES = "/predict|/invocations|/v2/models/.+/infer"


@dataclass(frozen=True)
class Traffic:
    """One track's counters (cumulative, or a window's differences)."""

    requests: float = 0.0  # scored requests
    errors: float = 0.0  # of which answered 5xx
    latency: tuple[float, ...] = ()  # requests per latency bucket, in order, +Inf last
    rows: float = 0.0  # answered rows with a confidence
    confidence: float = 0.0  # their summed confidence
    confidence_buckets: tuple[float, ...] = ()  # rows per confidence bucket
    confidence_bounds: tuple[float, ...] = ()  # those buckets' upper bounds, +Inf last
    feedback_correct: float = 0.0
    feedback_wrong: float = 0.0

    def since(self, start: Traffic) -> Traffic:
        """This reading minus an earlier one; a counter that went down (a restarted pod)
        counts from zero."""

        def less(now: float, then: float) -> float:
            return now - then if now >= then else now

        def each(now: tuple[float, ...], then: tuple[float, ...]) -> tuple[float, ...]:
            return tuple(less(n, t) for n, t in zip(now, then or (0.0,) * len(now), strict=False))

        return Traffic(
            requests=less(self.requests, start.requests),
            errors=less(self.errors, start.errors),
            latency=each(self.latency, start.latency),
            rows=less(self.rows, start.rows),
            confidence=less(self.confidence, start.confidence),
            confidence_buckets=each(self.confidence_buckets, start.confidence_buckets),
            confidence_bounds=self.confidence_bounds,
            feedback_correct=less(self.feedback_correct, start.feedback_correct),
            feedback_wrong=less(self.feedback_wrong, start.feedback_wrong),
        )

    def __add__(self, other: Traffic) -> Traffic:
        def each(mine: tuple[float, ...], theirs: tuple[float, ...]) -> tuple[float, ...]:
            if not mine or not theirs:
                return mine or theirs
            return tuple(a + b for a, b in zip(mine, theirs, strict=True))

        return Traffic(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            latency=each(self.latency, other.latency),
            rows=self.rows + other.rows,
            confidence=self.confidence + other.confidence,
            confidence_buckets=each(self.confidence_buckets, other.confidence_buckets),
            confidence_bounds=self.confidence_bounds or other.confidence_bounds,
            feedback_correct=self.feedback_correct + other.feedback_correct,
            feedback_wrong=self.feedback_wrong + other.feedback_wrong,
        )


Pods = dict[str, Traffic]  # one track's counters, pod by pod


def window(now: Pods, start: Pods) -> Traffic:
    """A track's traffic since `start`, pod by pod: a pod's counter that went down restarted
    (it counts from zero); a pod new since `start` counts whole; a pod missing now (gone,
    or its last scrape failed and its series went stale) adds nothing to this look, so
    no sum over pods ever mistakes a missing pod for a reset."""
    total = Traffic()
    for pod, counters in now.items():
        total = total + (counters.since(start[pod]) if pod in start else counters)
    return total


@dataclass(frozen=True)
class Check:
    name: str
    state: Literal["within", "beyond", "unclear"]
    detail: str
    # False: the check can abort but never holds a promotion back (feedback comes late)
    needed_to_promote: bool = True


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    checks: tuple[Check, ...]
    canary: Traffic
    stable: Traffic
    seconds: float
    why: str = ""

    def __str__(self) -> str:
        head = (
            f"{self.decision} after {self.seconds:.0f} s, {self.canary.requests:.0f} canary / "
            f"{self.stable.requests:.0f} stable requests"
        )
        body = "; ".join(f"{c.name} {c.state}: {c.detail}" for c in self.checks)
        return f"{head}{': ' + self.why if self.why else ''} — {body}"


def _state(bound: sequential.Bound, tolerance: float) -> Literal["within", "beyond", "unclear"]:
    """`bound` is the canary's harm (0: like stable; positive: worse)."""
    if bound.high <= tolerance:
        return "within"
    if bound.low > 0 and bound.estimate > tolerance:
        return "beyond"
    return "unclear"


CHECKS = 4  # errors, latency, estimated accuracy, feedback accuracy: alpha is shared
MIN_ROWS = 30  # per track, before a mean's normal approximation is trusted


def checks(canary: Traffic, stable: Traffic, criteria: CanaryParams) -> list[Check]:
    alpha = criteria.alpha / CHECKS
    found = []
    share = sequential.error_share(
        round(canary.errors), round(stable.errors), round(canary.requests), round(stable.requests)
    )
    errors = sequential.rate_difference(
        canary.errors,
        canary.requests,
        stable.errors,
        stable.requests,
        alpha,
        criteria.max_error_increase,
    )
    state = "beyond" if share.rejects(alpha) else _state(errors, criteria.max_error_increase)
    found.append(
        Check(
            "errors",
            state,
            f"ratio difference {errors} (tolerated {criteria.max_error_increase}); "
            f"{share.canary_errors} of {share.errors} errors on {share.share:.0%} of requests "
            f"(likelihood ratio {share.likelihood_ratio:.3g}, aborts at {1 / alpha:g})",
        )
    )
    if sum(canary.latency) >= 2 and sum(stable.latency) >= 2:
        tolerance = criteria.max_slower_probability - 0.5
        slower = sequential.slower_probability(
            np.array(canary.latency), np.array(stable.latency), alpha, tolerance
        )
        harm = sequential.Bound(slower.estimate - 0.5, slower.low - 0.5, slower.high - 0.5)
        found.append(
            Check(
                "latency",
                _state(harm, tolerance),
                f"P(canary slower) {slower.estimate:.3f} [{slower.low:.3f}, {slower.high:.3f}] "
                f"(tolerated {criteria.max_slower_probability})",
            )
        )
    if min(canary.rows, stable.rows) >= MIN_ROWS:
        canary_mean, stable_mean = canary.confidence / canary.rows, stable.confidence / stable.rows
        bounds = np.array(canary.confidence_bounds or stable.confidence_bounds)
        drop = sequential.mean_difference(
            stable_mean,
            sequential.histogram_variance(np.array(stable.confidence_buckets), bounds, stable_mean),
            stable.rows,
            canary_mean,
            sequential.histogram_variance(np.array(canary.confidence_buckets), bounds, canary_mean),
            canary.rows,
            alpha,
            criteria.max_accuracy_drop,
        )
        found.append(
            Check(
                "estimated accuracy",
                _state(drop, criteria.max_accuracy_drop),
                f"drop {drop} from mean confidence {canary_mean:.3f} vs {stable_mean:.3f} "
                f"(tolerated {criteria.max_accuracy_drop})",
            )
        )
    labelled_canary = canary.feedback_correct + canary.feedback_wrong
    labelled_stable = stable.feedback_correct + stable.feedback_wrong
    if min(labelled_canary, labelled_stable) >= criteria.min_feedback_rows:
        drop = sequential.rate_difference(
            stable.feedback_correct,
            labelled_stable,
            canary.feedback_correct,
            labelled_canary,
            alpha,
            criteria.max_accuracy_drop,
        )
        found.append(
            Check(
                "feedback accuracy",
                _state(drop, criteria.max_accuracy_drop),
                f"drop {drop} on {labelled_canary:.0f} / {labelled_stable:.0f} labelled rows "
                f"(tolerated {criteria.max_accuracy_drop})",
                needed_to_promote=False,
            )
        )
    return found


def judge(
    canary: Traffic, stable: Traffic, criteria: CanaryParams, seconds: float, settle_seconds: float
) -> Verdict:
    found = tuple(checks(canary, stable, criteria))
    beyond = [c.name for c in found if c.state == "beyond"]
    if beyond:
        return Verdict("abort", found, canary, stable, seconds, f"worse: {', '.join(beyond)}")
    if canary.requests < criteria.min_requests:
        why = f"{canary.requests:.0f} of the {criteria.min_requests} canary requests needed"
        return Verdict("wait", found, canary, stable, seconds, why)
    unclear = [c.name for c in found if c.state != "within" and c.needed_to_promote]
    if unclear:
        return Verdict("wait", found, canary, stable, seconds, f"unclear: {', '.join(unclear)}")
    if seconds < settle_seconds:
        why = f"every check within; settling {settle_seconds:g} s"
        return Verdict("wait", found, canary, stable, seconds, why)
    return Verdict("promote", found, canary, stable, seconds)


# --- Prometheus, the adapter --------------------------------------------------------------


@dataclass(frozen=True)
class Tracks:
    """PromQL selectors of each track's pods."""

    namespace: str
    deployment: str

    @property
    def canary(self) -> str:
        return f'namespace="{self.namespace}",pod=~"{self.deployment}-canary-.*"'

    @property
    def stable(self) -> str:
        return (
            f'namespace="{self.namespace}",pod=~"{self.deployment}-.*",'
            f'pod!~"{self.deployment}-canary-.*"'
        )


# A reading's queries are all evaluated at one instant this far in the past: each series'
# last sample at that instant is settled, so a scrape landing between two queries cannot
# make a count and its sum (or two tracks) describe different moments
READ_LAG_SECONDS = 2.0


class Vectors:
    """Instant queries of a Prometheus query API (GKE Managed Prometheus has the same), all
    evaluated at `at` (Unix seconds) when it is set."""

    def __init__(self, url: str, at: float | None = None) -> None:
        self.url = url.rstrip("/")
        self.at = at

    def at_instant(self, at: float) -> Vectors:
        return Vectors(self.url, at)

    def __call__(self, query: str) -> list[tuple[dict[str, str], float]]:
        import httpx

        params = {"query": query} | ({} if self.at is None else {"time": f"{self.at:.3f}"})
        try:
            answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10)
            answer.raise_for_status()
            return [
                (series["metric"], float(series["value"][1]))
                for series in answer.json()["data"]["result"]
            ]
        except httpx.HTTPError as error:
            raise ServiceError(f"Prometheus at {self.url}: {error}") from error
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise InputError(f"Prometheus at {self.url} answered no vector: {error}") from error


Query = Callable[[str], list[tuple[dict[str, str], float]]]


def _by_pod(vectors: Query, query: str) -> dict[str, float]:
    return {
        labels.get("pod", ""): value if math.isfinite(value) else 0.0
        for labels, value in vectors(f"sum by (pod) ({query})")
    }


def _buckets_by_pod(vectors: Query, metric: str) -> dict[str, list[tuple[float, float]]]:
    found: dict[str, list[tuple[float, float]]] = {}
    for labels, value in vectors(f"sum by (pod, le) ({metric})"):
        found.setdefault(labels.get("pod", ""), []).append((float(labels.get("le", "nan")), value))
    return {pod: sorted(cumulative) for pod, cumulative in found.items()}


def _per_bucket(cumulative: list[tuple[float, float]]) -> tuple[float, ...]:
    """Prometheus's cumulative `le` buckets, sorted by bound, as counts per bucket."""
    values = [value for _, value in cumulative]
    return tuple(float(c) for c in np.diff([0.0, *values])) if values else ()


def read_traffic(vectors: Query, selector: str) -> Pods:
    """One track's counters now, pod by pod (probes and scrapes left out of the requests)."""
    scored = f'{selector},route=~"{SCORED_ROUTES}"'
    requests = _by_pod(vectors, f"http_requests_total{{{scored}}}")
    errors = _by_pod(vectors, f'http_requests_total{{{scored},status=~"5.."}}')
    latency = _buckets_by_pod(vectors, f"prediction_latency_seconds_bucket{{{selector}}}")
    rows = _by_pod(vectors, f"prediction_confidence_count{{{selector}}}")
    confidence = _by_pod(vectors, f"prediction_confidence_sum{{{selector}}}")
    buckets = _buckets_by_pod(vectors, f"prediction_confidence_bucket{{{selector}}}")
    feedback: dict[str, dict[str, float]] = {}
    for labels, value in vectors(f"sum by (pod, outcome) (feedback_rows_total{{{selector}}})"):
        feedback.setdefault(labels.get("pod", ""), {})[labels.get("outcome", "")] = value
    pods = set(requests) | set(latency) | set(rows) | set(feedback)
    return {
        pod: Traffic(
            requests=requests.get(pod, 0.0),
            errors=errors.get(pod, 0.0),
            latency=_per_bucket(latency.get(pod, [])),
            rows=rows.get(pod, 0.0),
            confidence=confidence.get(pod, 0.0),
            confidence_buckets=_per_bucket(buckets.get(pod, [])),
            confidence_bounds=tuple(bound for bound, _ in buckets.get(pod, [])),
            feedback_correct=feedback.get(pod, {}).get("correct", 0.0),
            feedback_wrong=feedback.get(pod, {}).get("wrong", 0.0),
        )
        for pod in sorted(pods)
    }


@dataclass
class Analysis:
    """A step's looks until a verdict (or the wait's end)."""

    criteria: CanaryParams
    settle_seconds: float
    read: Callable[[], tuple[Pods, Pods]]  # (canary, stable) counters now, pod by pod
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    looks: list[Verdict] = field(default_factory=list)

    def run(self) -> Verdict:
        canary_start, stable_start = self.read()
        started = self.clock()
        while True:
            self.sleep(self.criteria.look_seconds)
            canary_now, stable_now = self.read()
            seconds = self.clock() - started
            verdict = judge(
                window(canary_now, canary_start),
                window(stable_now, stable_start),
                self.criteria,
                seconds,
                self.settle_seconds,
            )
            self.looks.append(verdict)
            if verdict.decision != "wait":
                return verdict
            if seconds >= self.criteria.max_wait_seconds:
                return Verdict(
                    self.criteria.on_timeout,
                    verdict.checks,
                    verdict.canary,
                    verdict.stable,
                    seconds,
                    f"no verdict in {self.criteria.max_wait_seconds:g} s ({verdict.why}): "
                    f"on_timeout is {self.criteria.on_timeout}",
                )


def from_prometheus(
    url: str, namespace: str, deployment: str, criteria: CanaryParams, settle_seconds: float
) -> Analysis:
    """A step's analysis on the pods of `deployment` (stable) and `<deployment>-canary`."""
    vectors, tracks = Vectors(url), Tracks(namespace, deployment)

    def read() -> tuple[Pods, Pods]:
        at_once = vectors.at_instant(time.time() - READ_LAG_SECONDS)
        return read_traffic(at_once, tracks.canary), read_traffic(at_once, tracks.stable)

    return Analysis(criteria, settle_seconds, read)

"""The canary's judge put to the test: many simulated canaries, one table.

Each request's outcome is real: the text example (examples/reviews) and a worse model of it
(a vocabulary cut to --worse-features words) are served by `mlship serve`, every test row is
sent once to each, and the server's answer, its confidence and its latency as the server's
own histogram saw it (prediction_latency_seconds, read from /metrics around each request)
are recorded. The canaries are then simulated from those records: requests arrive at
--rate per second, --share of them on the canary, in the order a random draw of test rows
gives; Prometheus's view is rebuilt as it would be scraped (the same counters and buckets)
and read every `look_seconds` by the judge mlship deploys with (ship/canary.py, the params
of examples/reviews), up to its `max_wait_seconds`. Feedback, where on, labels every
answered row. The scenarios:

- A/A: the same model on both tracks (a false abort is any abort);
- worse: the worse model on the canary, with and without feedback;
- errors: the same model, 2 % of the canary's requests answered 500;
- slow: the same model, 30 ms added to each canary request.

Beside it, the fixed thresholds a canary was judged by before (and Flagger's and Argo
Rollouts' analyses are): after one settle window, error ratio <= loadtest.max_failure_ratio
and p99 <= loadtest.max_p99_ms on the canary alone.

Usage: .venv/bin/python benchmarks/canary.py [--runs 300] [--rate 20] [--share 0.1]
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving as bench
from mlship.config.params import CanaryParams, parse_params
from mlship.serving.metrics import CONFIDENCE_BUCKETS, LATENCY_BUCKETS
from mlship.ship.canary import Traffic, judge

PARAMS = bench.REPO / "examples/reviews/params.yaml"


@dataclass(frozen=True)
class Outcome:
    """One request as the server answered it."""

    correct: bool
    confidence: float
    bucket: int  # index into LATENCY_BUCKETS (+Inf last), as the server's histogram counted
    seconds: float


def _histogram(client: httpx.Client, url: str) -> np.ndarray:
    text = client.get(url).text
    counts = [
        float(m.group(2))
        for m in re.finditer(
            r'^prediction_latency_seconds_bucket\{.*le="([^"]+)".*\} (\S+)$', text, re.M
        )
    ]
    return np.array(counts)


def record(model: bench.Model, folder: Path, labels: list[str]) -> list[Outcome]:
    """Every test row once, one request at a time, through a real server."""
    server, infer = bench.mlship(model, folder, workers=1)
    base = infer.split("/v2/")[0]
    predict, metrics = f"{base}/predict", f"{base}/metrics"
    outcomes = []
    try:
        with httpx.Client(timeout=10) as client:
            for row, truth in zip(model.rows, labels, strict=True):
                before = _histogram(client, metrics)
                started = time.perf_counter()
                answer = client.post(predict, json=row)
                took = time.perf_counter() - started
                answer.raise_for_status()
                body = answer.json()
                after = _histogram(client, metrics)
                if len(before) != len(after):  # the first request makes the series
                    before = np.zeros_like(after)
                grown = np.flatnonzero(np.diff(np.concatenate([[0.0], after - before])) > 0)
                outcomes.append(
                    Outcome(body["label"] == truth, body["confidence"], int(grown[0]), took)
                )
    finally:
        server.stop()
    return outcomes


@dataclass
class Track:
    requests: int = 0
    errors: int = 0
    rows: int = 0
    confidence: float = 0.0
    correct: int = 0
    wrong: int = 0

    def __post_init__(self) -> None:
        self.latency = np.zeros(len(LATENCY_BUCKETS) + 1)
        self.confidence_buckets = np.zeros(len(CONFIDENCE_BUCKETS) + 1)

    def add(self, outcome: Outcome, failed: bool, extra_seconds: float, feedback: bool) -> None:
        self.requests += 1
        if failed:
            self.errors += 1
            return
        bucket = outcome.bucket
        if extra_seconds:
            seconds = LATENCY_BUCKETS[min(bucket, len(LATENCY_BUCKETS) - 1)] + extra_seconds
            bucket = int(np.searchsorted(LATENCY_BUCKETS, seconds, side="left"))
        self.latency[bucket] += 1
        self.rows += 1
        self.confidence += outcome.confidence
        self.confidence_buckets[np.searchsorted(CONFIDENCE_BUCKETS, outcome.confidence)] += 1
        if feedback:
            self.correct += outcome.correct
            self.wrong += not outcome.correct

    def traffic(self) -> Traffic:
        return Traffic(
            requests=float(self.requests),
            errors=float(self.errors),
            latency=tuple(self.latency.tolist()),
            rows=float(self.rows),
            confidence=self.confidence,
            confidence_buckets=tuple(self.confidence_buckets.tolist()),
            confidence_bounds=(*CONFIDENCE_BUCKETS, float("inf")),
            feedback_correct=float(self.correct),
            feedback_wrong=float(self.wrong),
        )


@dataclass(frozen=True)
class Scenario:
    name: str
    canary_worse: bool = False
    feedback: bool = False
    error_rate: float = 0.0
    extra_seconds: float = 0.0
    bad: bool = False  # a canary that should be stopped


@dataclass
class Run:
    decision: str
    why: str  # the checks that aborted, or "timeout"
    seconds: float
    canary_requests: float
    fixed_aborts: bool


def p99_ms(latency: np.ndarray) -> float | None:
    """histogram_quantile(0.99, ...) as Prometheus computes it (linear within a bucket)."""
    total = latency.sum()
    if total == 0:
        return None
    rank, cumulative = 0.99 * total, np.cumsum(latency)
    bucket = int(np.searchsorted(cumulative, rank, side="left"))
    if bucket >= len(LATENCY_BUCKETS):
        return LATENCY_BUCKETS[-1] * 1000
    lower = LATENCY_BUCKETS[bucket - 1] if bucket else 0.0
    below = cumulative[bucket - 1] if bucket else 0.0
    share = (rank - below) / latency[bucket]
    return float((lower + (LATENCY_BUCKETS[bucket] - lower) * share) * 1000)


def simulate(
    scenario: Scenario,
    stable_outcomes: list[Outcome],
    worse_outcomes: list[Outcome],
    criteria: CanaryParams,
    budget: tuple[float, float, float],  # max error ratio, max p99 ms, settle seconds
    rate: float,
    share: float,
    rng: np.random.Generator,
) -> Run:
    canary, stable = Track(), Track()
    canary_outcomes = worse_outcomes if scenario.canary_worse else stable_outcomes
    per_look = round(rate * criteria.look_seconds)
    seconds, fixed_aborts = 0.0, None
    max_error_ratio, max_p99, settle = budget
    while True:
        rows = rng.integers(0, len(stable_outcomes), per_look)
        on_canary = rng.random(per_look) < share
        failed = rng.random(per_look) < scenario.error_rate
        for row, to_canary, fails in zip(rows, on_canary, failed, strict=True):
            if to_canary:
                canary.add(
                    canary_outcomes[row], bool(fails), scenario.extra_seconds, scenario.feedback
                )
            else:
                stable.add(stable_outcomes[row], False, 0.0, scenario.feedback)
        seconds += criteria.look_seconds
        if fixed_aborts is None and seconds >= settle:
            ratio = canary.errors / canary.requests if canary.requests else 1.0
            p99 = p99_ms(canary.latency)
            fixed_aborts = ratio > max_error_ratio or p99 is None or p99 > max_p99
        verdict = judge(canary.traffic(), stable.traffic(), criteria, seconds, settle)
        if verdict.decision != "wait":
            worse = [c.name for c in verdict.checks if c.state == "beyond"]
            why = ", ".join(worse)
            return Run(verdict.decision, why, seconds, canary.requests, bool(fixed_aborts))
        if seconds >= criteria.max_wait_seconds:
            why = f"timeout, {verdict.why}"
            return Run(criteria.on_timeout, why, seconds, canary.requests, bool(fixed_aborts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="simulated canaries per scenario")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second, both tracks")
    parser.add_argument("--share", type=float, default=0.1, help="the canary's share of traffic")
    parser.add_argument(
        "--worse-features", type=int, default=220, help="the worse model's vocabulary"
    )
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()

    raw = yaml.safe_load(PARAMS.read_text())
    params = parse_params(raw, PARAMS)
    with tempfile.TemporaryDirectory(prefix="mlship-canary-bench-") as scratch:
        root = Path(scratch)
        worse_raw = {**raw, "train": {**raw["train"], "text": {**raw["train"]["text"]}}}
        worse_raw["train"]["text"]["max_features"] = options.worse_features
        worse_file = root / "worse.yaml"
        worse_file.write_text(yaml.safe_dump(worse_raw))
        stable_model = bench.train("stable", PARAMS, root)
        worse_model = bench.train("worse", worse_file, root)
        labels = _labels(stable_model, root / "stable")
        stable_outcomes = record(stable_model, root, labels)
        worse_outcomes = record(replace(worse_model, rows=stable_model.rows), root, labels)

    def accuracy(outcomes: list[Outcome]) -> float:
        return sum(o.correct for o in outcomes) / len(outcomes)

    def mean_ms(outcomes: list[Outcome]) -> float:
        return statistics.mean(o.seconds for o in outcomes) * 1000

    criteria = params.canary
    budget = (params.loadtest.max_failure_ratio, params.loadtest.max_p99_ms, 60.0)
    scenarios = [
        Scenario("A/A, same model"),
        Scenario("A/A, same model, feedback", feedback=True),
        Scenario("worse model, no feedback", canary_worse=True, bad=True),
        Scenario("worse model, feedback", canary_worse=True, feedback=True, bad=True),
        Scenario("2 % errors", error_rate=0.02, bad=True),
        Scenario("30 ms slower", extra_seconds=0.030, bad=True),
    ]
    rng = np.random.default_rng(options.seed)
    print(
        f"{len(stable_outcomes)} test rows recorded through mlship serve: stable accuracy "
        f"{accuracy(stable_outcomes):.3f}, mean confidence "
        f"{statistics.mean(o.confidence for o in stable_outcomes):.3f}, "
        f"{mean_ms(stable_outcomes):.1f} ms per request; worse (vocabulary "
        f"{options.worse_features}) {accuracy(worse_outcomes):.3f}, mean confidence "
        f"{statistics.mean(o.confidence for o in worse_outcomes):.3f}"
    )
    print(
        f"{options.runs} canaries per scenario, {options.rate:g} requests/s, "
        f"{options.share:.0%} on the canary, a look every {criteria.look_seconds:g} s, "
        f"alpha {criteria.alpha}, wait at most {criteria.max_wait_seconds:g} s then "
        f"{criteria.on_timeout}; fixed thresholds: error ratio <= {budget[0]}, "
        f"p99 <= {budget[1]:g} ms after {budget[2]:g} s\n"
    )
    print(
        "| scenario | aborted (sequential) | promoted | median time to verdict | median "
        "canary requests | aborted by | aborted (fixed thresholds) |"
    )
    print("|---|---|---|---|---|---|---|")
    for scenario in scenarios:
        runs = [
            simulate(
                scenario,
                stable_outcomes,
                worse_outcomes,
                criteria,
                budget,
                options.rate,
                options.share,
                rng,
            )
            for _ in range(options.runs)
        ]
        aborted = sum(r.decision == "abort" for r in runs) / len(runs)
        promoted = sum(r.decision == "promote" for r in runs) / len(runs)
        fixed = sum(r.fixed_aborts for r in runs) / len(runs)
        reasons = collections.Counter(r.why for r in runs if r.decision == "abort")
        by = ", ".join(f"{why} {count}" for why, count in reasons.most_common()) or "-"
        print(
            f"| {scenario.name} | {aborted:.1%} | {promoted:.1%} | "
            f"{statistics.median(r.seconds for r in runs):.0f} s | "
            f"{statistics.median(r.canary_requests for r in runs):.0f} | {by} | {fixed:.1%} |"
        )


def _labels(model: bench.Model, folder: Path) -> list[str]:
    """The true label of each of the benchmark's rows (bench.train keeps the first 500
    gap-free test rows, in order)."""
    import pandas as pd

    from mlship.paths import PipelinePaths

    paths = PipelinePaths.read(folder / "dvc.yaml")
    raw = yaml.safe_load(PARAMS.read_text())
    columns = [*model.features["text"], *model.features["categorical"], *model.features["numeric"]]
    test = pd.read_parquet(folder / paths.test)
    test = test.dropna(subset=columns).head(len(model.rows))
    return [str(v) for v in test[raw["data"]["target"]]]


if __name__ == "__main__":
    main()

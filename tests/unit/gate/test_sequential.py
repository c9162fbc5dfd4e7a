"""The always-valid tests the canary is judged by: known answers, and their promise — an
A/A canary looked at after every batch is wrongly flagged at most alpha of the time, where a
fixed-sample test read as often is not."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from mlship.gate import sequential


def test_the_confidence_sequence_has_the_mixture_s_closed_form() -> None:
    bound = sequential.confidence_sequence(0.0, 0.01, alpha=0.05, scale=0.1)
    # sqrt(2 V (V + tau^2) / tau^2 * log(sqrt((V + tau^2) / V) / alpha)), V = tau^2 = 0.01
    half = math.sqrt(0.04 * math.log(math.sqrt(2) / 0.05))
    assert bound.low == pytest.approx(-half) and bound.high == pytest.approx(half)
    assert half == pytest.approx(0.36564, abs=1e-5)
    wider = sequential.confidence_sequence(0.0, 0.01, alpha=0.01, scale=0.1)
    assert wider.high > bound.high


def test_no_spread_concludes_nothing() -> None:
    bound = sequential.confidence_sequence(0.2, 0.0, alpha=0.05, scale=0.1)
    assert (bound.low, bound.high) == (-math.inf, math.inf)
    assert sequential.rate_difference(0, 0, 5, 100, 0.05, 0.01).high == math.inf
    with pytest.raises(ValueError, match="alpha"):
        sequential.confidence_sequence(0.0, 0.01, alpha=1.5, scale=0.1)


def test_the_slower_probability_is_mann_whitney_s_auc() -> None:
    rng = np.random.default_rng(3)
    canary, stable = rng.integers(0, 6, 400), rng.integers(1, 7, 900)
    buckets = np.arange(8)
    per_bucket = [np.bincount(x, minlength=len(buckets)) for x in (canary, stable)]
    bound = sequential.slower_probability(per_bucket[0], per_bucket[1], 0.05, 0.1)
    u = mannwhitneyu(canary, stable).statistic  # ties count half
    assert bound.estimate == pytest.approx(u / (len(canary) * len(stable)))
    assert bound.high < 0.5  # the canary is faster here, and clearly so


def test_one_bucket_is_no_certainty() -> None:
    alike = sequential.slower_probability(np.array([0, 200, 0]), np.array([0, 900, 0]), 0.05, 0.1)
    assert alike.estimate == 0.5
    # DeLong's variance is 0 here; the null's keeps the interval honest
    assert alike.high - alike.low > 0.05
    slower = sequential.slower_probability(np.array([0, 0, 60]), np.array([900, 0, 0]), 0.05, 0.1)
    assert slower.estimate == 1.0 and slower.low > 0.6


def test_a_canary_failing_beyond_its_share_is_caught_after_a_few_errors() -> None:
    # 3 errors, all the canary's, on 10 % of the traffic: B(4, 1) / 0.1^3 = 0.25 / 0.001
    caught = sequential.error_share(3, 0, 100, 900)
    assert caught.likelihood_ratio == pytest.approx(250)
    assert caught.rejects(0.05)
    # its fair share of errors is no evidence
    assert not sequential.error_share(1, 9, 100, 900).rejects(0.05)
    # fewer than its share is never an abort
    assert not sequential.error_share(0, 40, 100, 900).rejects(0.05)
    assert not sequential.error_share(0, 0, 100, 900).rejects(0.05)


def _peeks(flags: np.ndarray) -> float:
    """The share of runs flagged at any look."""
    return float(flags.any(axis=1).mean())


def test_looking_after_every_batch_keeps_false_alarms_under_alpha() -> None:
    """2,000 A/A canaries (accuracy 0.8 on both tracks), looked at after each of 40 batches
    of 50 canary and 450 stable rows: the confidence sequence flags under 5 %, a z-test at
    each look flags several times that."""
    rng = np.random.default_rng(7)
    runs, looks = 2000, 40
    canary = rng.binomial(50, 0.8, (runs, looks)).cumsum(axis=1)
    stable = rng.binomial(450, 0.8, (runs, looks)).cumsum(axis=1)
    canary_n = 50 * np.arange(1, looks + 1)
    stable_n = 450 * np.arange(1, looks + 1)
    always_valid = np.zeros((runs, looks), dtype=bool)
    naive = np.zeros((runs, looks), dtype=bool)
    for run in range(runs):
        for look in range(looks):
            args = (canary[run, look], canary_n[look], stable[run, look], stable_n[look])
            bound = sequential.rate_difference(*args, 0.05, 0.02)
            always_valid[run, look] = bound.low > 0 or bound.high < 0
            p_c, p_s = args[0] / args[1], args[2] / args[3]
            se = math.sqrt(p_c * (1 - p_c) / args[1] + p_s * (1 - p_s) / args[3])
            naive[run, look] = abs(p_c - p_s) > 1.96 * se
    assert _peeks(always_valid) <= 0.05
    assert _peeks(naive) > 0.15


def test_the_share_test_keeps_its_alpha_under_every_look() -> None:
    rng = np.random.default_rng(11)
    flagged = 0
    for _ in range(2000):
        # 2 % errors on both tracks, 10 % of the traffic on the canary, 60 looks of 100
        canary_errors = stable_errors = 0
        for look in range(1, 61):
            canary_errors += rng.binomial(10, 0.02)
            stable_errors += rng.binomial(90, 0.02)
            if sequential.error_share(canary_errors, stable_errors, 10 * look, 90 * look).rejects(
                0.05
            ):
                flagged += 1
                break
    assert flagged / 2000 <= 0.05

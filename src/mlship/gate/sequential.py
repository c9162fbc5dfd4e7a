"""Always-valid statistics: a canary against stable, looked at after every batch of requests.

A fixed-sample test read again and again inflates its false alarms (ten looks at 5 % abort
about one A/A canary in five); these stay valid however often they are read, so a verdict
comes as soon as the evidence suffices. Two tools:

- a confidence sequence for an asymptotically normal difference (the normal-mixture mSPRT
  of Johari, Pekelis & Walsh, "Always valid inference", 2017): with the estimate's variance
  V and the mixture's scale tau (the smallest difference that matters), the set of
  differences not yet rejected at level alpha is
  |estimate - d| <= sqrt(2 V (V + tau^2) / tau^2 * log(sqrt((V + tau^2) / V) / alpha));
- a mixture likelihood ratio on who failed (Beta(1, 1) against the canary's share of traffic):
  given E errors, the canary's count is Binomial(E, share) when both fail alike, so a
  canary failing more than its share is caught after a handful of errors.

Each is a test martingale: the chance it ever crosses 1/alpha under the null is <= alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln


@dataclass(frozen=True)
class Bound:
    """An always-valid interval on `estimate` (canary minus stable, or the canary's P(slower))."""

    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def confidence_sequence(estimate: float, variance: float, alpha: float, scale: float) -> Bound:
    """The normal-mixture confidence sequence around `estimate` (variance of the estimate,
    mixture scale tau = `scale`). A zero variance (no spread yet) gives an infinite interval:
    nothing is concluded from data that cannot show its own uncertainty."""
    if not 0 < alpha < 1 or scale <= 0:
        raise ValueError(f"alpha must be in (0, 1) and the scale positive: {alpha}, {scale}")
    if not math.isfinite(variance) or variance <= 0:
        return Bound(estimate, -math.inf, math.inf)
    tau2 = scale * scale
    half = math.sqrt(
        2
        * variance
        * (variance + tau2)
        / tau2
        * math.log(math.sqrt((variance + tau2) / variance) / alpha)
    )
    return Bound(estimate, estimate - half, estimate + half)


def _smoothed(successes: float, trials: float) -> float:
    """A rate pulled half a count towards 1/2: its variance is never zero, so a canary with
    no errors yet is not certain to have none."""
    return (successes + 0.5) / (trials + 1)


def rate_difference(
    canary_hits: float,
    canary_n: float,
    stable_hits: float,
    stable_n: float,
    alpha: float,
    scale: float,
) -> Bound:
    """canary rate - stable rate (error ratio, accuracy) with its confidence sequence."""
    if canary_n <= 0 or stable_n <= 0:
        return Bound(math.nan, -math.inf, math.inf)
    p_canary, p_stable = _smoothed(canary_hits, canary_n), _smoothed(stable_hits, stable_n)
    variance = p_canary * (1 - p_canary) / canary_n + p_stable * (1 - p_stable) / stable_n
    estimate = canary_hits / canary_n - stable_hits / stable_n
    return confidence_sequence(estimate, variance, alpha, scale)


def mean_difference(
    canary_mean: float,
    canary_variance: float,
    canary_n: float,
    stable_mean: float,
    stable_variance: float,
    stable_n: float,
    alpha: float,
    scale: float,
) -> Bound:
    """canary mean - stable mean (of per-request values, e.g. the confidence that estimates
    accuracy without labels) with its confidence sequence."""
    if canary_n <= 1 or stable_n <= 1:
        return Bound(math.nan, -math.inf, math.inf)
    variance = canary_variance / canary_n + stable_variance / stable_n
    return confidence_sequence(canary_mean - stable_mean, variance, alpha, scale)


def histogram_variance(counts: np.ndarray, upper_bounds: np.ndarray, mean: float) -> float:
    """The sample variance of values known by their histogram (Prometheus's `le` bounds; an
    infinite one is taken as the bound before it), each at its bucket's middle, around
    their exact mean."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum()
    if n < 2 or len(counts) != len(upper_bounds):
        return math.nan
    upper = np.asarray(upper_bounds, dtype=float).copy()
    for i in range(len(upper)):
        if not math.isfinite(upper[i]):
            upper[i] = upper[i - 1] if i else 0.0
    lower = np.concatenate([[min(0.0, upper[0])], upper[:-1]])
    middles = (lower + upper) / 2
    return float((counts * (middles - mean) ** 2).sum() / (n - 1))


def slower_probability(
    canary_buckets: np.ndarray, stable_buckets: np.ndarray, alpha: float, scale: float
) -> Bound:
    """P(a canary request is slower than a stable one) + half the ties — the Mann-Whitney
    AUC — from latency histogram counts (the same buckets, in order, the last one +Inf),
    with DeLong's variance; 0.5 when both are alike. The variance is never taken below the
    null's, (n + m + 1) / (12 n m): coarse buckets would otherwise fake certainty (all
    requests in one bucket give DeLong's variance 0)."""
    canary = np.asarray(canary_buckets, dtype=float)
    stable = np.asarray(stable_buckets, dtype=float)
    n, m = canary.sum(), stable.sum()
    if n < 2 or m < 2:
        return Bound(math.nan, -math.inf, math.inf)
    stable_below = np.concatenate([[0.0], np.cumsum(stable)[:-1]])
    canary_above = canary.sum() - np.cumsum(canary)
    # each canary request: the share of stable requests it is slower than (ties half)
    canary_placement = (stable_below + 0.5 * stable) / m
    # each stable request: the share of canary requests slower than it (ties half)
    stable_placement = (canary_above + 0.5 * canary) / n
    auc = float((canary * canary_placement).sum() / n)
    canary_spread = float((canary * (canary_placement - auc) ** 2).sum() / (n - 1))
    stable_spread = float((stable * (stable_placement - auc) ** 2).sum() / (m - 1))
    variance = max(canary_spread / n + stable_spread / m, (n + m + 1) / (12 * n * m))
    return confidence_sequence(auc, variance, alpha, scale)


@dataclass(frozen=True)
class ShareTest:
    """Whether the canary causes more than its share of the errors."""

    canary_errors: int
    errors: int
    share: float  # the canary's share of requests
    likelihood_ratio: float

    def rejects(self, alpha: float) -> bool:
        """True when the canary fails more often than stable, at level alpha."""
        more = self.errors > 0 and self.canary_errors / self.errors > self.share
        return more and self.likelihood_ratio >= 1 / alpha


def error_share(canary_errors: int, stable_errors: int, canary_n: int, stable_n: int) -> ShareTest:
    """The Beta(1, 1)-mixture likelihood ratio that the canary's share of the errors is not
    its share of the requests (its log: log B(1 + x, 1 + E - x) - x log q - (E - x) log(1 - q))."""
    errors = canary_errors + stable_errors
    if canary_n <= 0 or stable_n <= 0 or errors == 0:
        return ShareTest(canary_errors, errors, 0.0, 1.0)
    share = canary_n / (canary_n + stable_n)
    log_ratio = (
        betaln(1 + canary_errors, 1 + stable_errors)
        - canary_errors * math.log(share)
        - stable_errors * math.log(1 - share)
    )
    return ShareTest(canary_errors, errors, share, math.exp(min(log_ratio, 700.0)))

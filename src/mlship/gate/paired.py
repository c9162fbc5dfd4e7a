"""Paired statistics: the candidate against the champion on the same test rows.

Each bootstrap resample draws row indices once and scores both models on them, so an
interval reflects the paired design rather than two independent samples. Classification
compares labels (accuracy, balanced accuracy, macro F1; McNemar's exact test); regression
compares errors (RMSE, MAE as the relative error reduction; Wilcoxon's signed-rank test on
the absolute errors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, wilcoxon

from mlship.config.params import ChampionParams

# rows of a 2-D (resamples x rows) array -> one score per resample
RowScore = Callable[[np.ndarray, np.ndarray, list[str]], np.ndarray]
RESAMPLES_PER_CHUNK = 200  # bounds memory: 200 x test rows per array


def macro_f1_rows(actual: np.ndarray, predicted: np.ndarray, classes: list[str]) -> np.ndarray:
    """Macro F1 of each row of `actual`/`predicted` (2-D: one resample per row).

    Vectorised over resamples; matches sklearn's f1_score(average="macro", zero_division=0).
    """
    scores = []
    for label in classes:
        truth, guess = actual == label, predicted == label
        tp = (truth & guess).sum(axis=1)
        fp = (~truth & guess).sum(axis=1)
        fn = (truth & ~guess).sum(axis=1)
        denominator = 2 * tp + fp + fn
        scores.append(np.divide(2 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0))
    mean: np.ndarray = np.mean(scores, axis=0)
    return mean


def balanced_accuracy_rows(
    actual: np.ndarray, predicted: np.ndarray, classes: list[str]
) -> np.ndarray:
    recalls = []
    for label in classes:
        truth = actual == label
        support = truth.sum(axis=1)
        hits = (truth & (predicted == label)).sum(axis=1)
        recalls.append(np.divide(hits, support, out=np.full(len(hits), np.nan), where=support > 0))
    mean: np.ndarray = np.nanmean(recalls, axis=0)
    return mean


def accuracy_rows(actual: np.ndarray, predicted: np.ndarray, classes: list[str]) -> np.ndarray:
    rate: np.ndarray = (actual == predicted).mean(axis=1)
    return rate


def rmse_rows(actual: np.ndarray, predicted: np.ndarray, classes: list[str]) -> np.ndarray:
    error: np.ndarray = np.sqrt(((actual - predicted) ** 2).mean(axis=1))
    return error


def mae_rows(actual: np.ndarray, predicted: np.ndarray, classes: list[str]) -> np.ndarray:
    error: np.ndarray = np.abs(actual - predicted).mean(axis=1)
    return error


METRIC_ROWS: dict[str, RowScore] = {
    "accuracy": accuracy_rows,
    "balanced_accuracy": balanced_accuracy_rows,
    "macro_f1": macro_f1_rows,
    "rmse": rmse_rows,
    "mae": mae_rows,
}
ERRORS = ("rmse", "mae")  # lower is better: compared as the relative error reduction


@dataclass(frozen=True)
class PairedDifference:
    candidate: float
    champion: float
    difference: float  # candidate better when positive
    low: float
    high: float


def _difference(metric: str, candidate: np.ndarray, champion: np.ndarray) -> np.ndarray:
    """Candidate minus champion for scores; for errors, the champion's error reduced by the
    candidate, relative to the champion's error (0.05: 5% smaller errors)."""
    if metric not in ERRORS:
        gain: np.ndarray = candidate - champion
        return gain
    floor = np.finfo(float).tiny
    relative: np.ndarray = (champion - candidate) / np.maximum(champion, floor)
    return relative


def paired_bootstrap(
    metric: str,
    actual: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    classes: list[str],
    settings: ChampionParams,
) -> PairedDifference:
    """The paired difference on all rows, with a seeded percentile-bootstrap interval."""
    score = METRIC_ROWS[metric]
    rng = np.random.default_rng(settings.seed)
    differences = []
    for start in range(0, settings.resamples, RESAMPLES_PER_CHUNK):
        size = min(RESAMPLES_PER_CHUNK, settings.resamples - start)
        rows = rng.integers(0, len(actual), size=(size, len(actual)))
        differences.append(
            _difference(
                metric,
                score(actual[rows], candidate[rows], classes),
                score(actual[rows], champion[rows], classes),
            )
        )
    tail = (1 - settings.confidence) / 2
    low, high = np.quantile(np.concatenate(differences), [tail, 1 - tail])
    on_all = float(score(actual[None, :], candidate[None, :], classes)[0])
    champion_all = float(score(actual[None, :], champion[None, :], classes)[0])
    difference = float(_difference(metric, np.array([on_all]), np.array([champion_all]))[0])
    return PairedDifference(on_all, champion_all, difference, float(low), float(high))


@dataclass(frozen=True)
class PairedTest:
    name: str  # McNemar | Wilcoxon
    candidate_better: int  # rows where the candidate does better
    champion_better: int
    p_value: float

    def describe(self) -> str:
        return (
            f"{self.name} p = {self.p_value:.4g} ({self.candidate_better} rows better for the "
            f"candidate, {self.champion_better} for the champion)"
        )


def mcnemar_exact(actual: np.ndarray, candidate: np.ndarray, champion: np.ndarray) -> PairedTest:
    """McNemar's exact test on the discordant pairs (two-sided binomial, p = 0.5)."""
    candidate_right, champion_right = candidate == actual, champion == actual
    b = int((candidate_right & ~champion_right).sum())
    c = int((~candidate_right & champion_right).sum())
    p_value = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return PairedTest("McNemar", b, c, p_value)


def wilcoxon_errors(actual: np.ndarray, candidate: np.ndarray, champion: np.ndarray) -> PairedTest:
    """Wilcoxon's signed-rank test (two-sided) on the per-row absolute errors; rows where
    both err equally are dropped, as the test's "wilcox" convention does."""
    gain = np.abs(actual - champion) - np.abs(actual - candidate)
    better, worse = int((gain > 0).sum()), int((gain < 0).sum())
    if better + worse == 0:
        return PairedTest("Wilcoxon", 0, 0, 1.0)
    p_value = float(wilcoxon(gain[gain != 0]).pvalue)
    return PairedTest("Wilcoxon", better, worse, p_value)

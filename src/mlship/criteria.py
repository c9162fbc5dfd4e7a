"""The quality gate: every criterion a candidate must meet, as pure functions.

Groups: thresholds on the evaluation metrics; a paired comparison with the champion on the
same test rows (seeded bootstrap intervals, McNemar's exact test); behavioural checks on
text; the data contract's verdict. The gate passes only when every criterion passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest

from mlship.config import (
    BehaviourParams,
    ChampionParams,
    FunctionalityParams,
    GateParams,
    InvarianceParams,
)
from mlship.errors import InputError

Predict = Callable[[list[str]], Sequence[str]]


@dataclass(frozen=True)
class Criterion:
    group: str  # threshold | champion | behaviour | contract
    name: str
    passed: bool
    detail: str
    value: float | None = None
    limit: float | None = None
    champion: float | None = None
    interval: tuple[float, float] | None = None
    p_value: float | None = None


def _number(metrics: dict[str, Any], key: str, source: str) -> float:
    """A metric that must be present and finite; NaN or a gap can never pass."""
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{source}: {key!r} is missing or not a number")
    if not math.isfinite(value):
        raise InputError(f"{source}: {key!r} is {value}, not a finite number")
    return float(value)


def threshold_criteria(
    metrics: dict[str, Any], latency: dict[str, Any], gate: GateParams
) -> list[Criterion]:
    def at_least(name: str, value: float, limit: float) -> Criterion:
        ok = value >= limit
        return Criterion(
            "threshold",
            f"{name} >= {limit}",
            ok,
            f"{name} = {value:.4f} {'>=' if ok else '<'} {limit}",
            value,
            limit,
        )

    def at_most(name: str, value: float, limit: float) -> Criterion:
        ok = value <= limit
        return Criterion(
            "threshold",
            f"{name} <= {limit}",
            ok,
            f"{name} = {value:.4f} {'<=' if ok else '>'} {limit}",
            value,
            limit,
        )

    source = "metrics"
    found = [
        at_least("accuracy", _number(metrics, "accuracy", source), gate.min_accuracy),
        at_least("macro_f1", _number(metrics, "macro_f1", source), gate.min_macro_f1),
    ]
    if gate.min_class_recall is not None:
        per_class = metrics.get("per_class")
        if not isinstance(per_class, dict) or not per_class:
            raise InputError(f"{source}: 'per_class' is missing")
        for label, values in per_class.items():
            recall = _number(values, "recall", f"{source}: per_class.{label}")
            found.append(at_least(f"recall[{label}]", recall, gate.min_class_recall))
    if gate.max_log_loss is not None:
        found.append(at_most("log_loss", _number(metrics, "log_loss", source), gate.max_log_loss))
    if gate.max_us_per_row is not None:
        cost = _number(latency, "batch_us_per_row", "latency")
        found.append(at_most("us_per_row", cost, gate.max_us_per_row))
    return found


# --- paired statistics ------------------------------------------------------------------


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


METRIC_ROWS = {
    "accuracy": accuracy_rows,
    "balanced_accuracy": balanced_accuracy_rows,
    "macro_f1": macro_f1_rows,
}


@dataclass(frozen=True)
class PairedDifference:
    candidate: float
    champion: float
    difference: float
    low: float
    high: float


def paired_bootstrap(
    metric: str,
    actual: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    classes: list[str],
    settings: ChampionParams,
) -> PairedDifference:
    """Candidate minus champion on the same rows, with a percentile bootstrap interval.

    Each resample draws row indices once and scores both models on them, so the interval
    reflects the paired design rather than two independent samples.
    """
    score = METRIC_ROWS[metric]
    rng = np.random.default_rng(settings.seed)
    rows = rng.integers(0, len(actual), size=(settings.resamples, len(actual)))
    differences = score(actual[rows], candidate[rows], classes) - score(
        actual[rows], champion[rows], classes
    )
    tail = (1 - settings.confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    on_all = score(actual[None, :], candidate[None, :], classes)[0]
    champion_all = score(actual[None, :], champion[None, :], classes)[0]
    return PairedDifference(
        float(on_all), float(champion_all), float(on_all - champion_all), float(low), float(high)
    )


@dataclass(frozen=True)
class McNemar:
    candidate_only: int  # rows the candidate gets right and the champion wrong
    champion_only: int
    p_value: float


def mcnemar_exact(actual: np.ndarray, candidate: np.ndarray, champion: np.ndarray) -> McNemar:
    """McNemar's exact test on the discordant pairs (two-sided binomial, p = 0.5)."""
    candidate_right, champion_right = candidate == actual, champion == actual
    b = int((candidate_right & ~champion_right).sum())
    c = int((~candidate_right & champion_right).sum())
    p_value = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return McNemar(b, c, p_value)


def champion_criteria(
    actual: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    classes: list[str],
    gate: GateParams,
    champion_version: str,
) -> list[Criterion]:
    settings = gate.champion
    test = mcnemar_exact(actual, candidate, champion)
    found = []
    for metric in settings.metrics:
        paired = paired_bootstrap(metric, actual, candidate, champion, classes, settings)
        bound = 0.0 if settings.require_better else -settings.margin
        passed = paired.low > bound
        p_value = test.p_value if metric == "accuracy" else None
        if settings.require_better and metric == "accuracy":
            passed = passed and test.p_value < gate.alpha
        rule = (
            "better than"
            if settings.require_better
            else f"non-inferior (margin {settings.margin}) to"
        )
        detail = (
            f"{metric}: candidate {paired.candidate:.4f} vs champion v{champion_version} "
            f"{paired.champion:.4f}, difference {paired.difference:+.4f}, "
            f"{settings.confidence:.0%} CI [{paired.low:+.4f}, {paired.high:+.4f}]"
        )
        if p_value is not None:
            detail += (
                f", McNemar p = {p_value:.4g} ({test.candidate_only} rows only the candidate "
                f"gets right, {test.champion_only} only the champion)"
            )
        found.append(
            Criterion(
                "champion",
                f"{metric} {rule} champion",
                passed,
                detail,
                value=paired.candidate,
                limit=bound,
                champion=paired.champion,
                interval=(paired.low, paired.high),
                p_value=p_value,
            )
        )
    return found


# --- behaviour ------------------------------------------------------------------------


def invariance_criteria(
    predict: Predict, texts: list[str], settings: InvarianceParams
) -> list[Criterion]:
    rows = texts[: settings.rows]
    before = list(predict(rows))
    found = []
    for edit in settings.edits:
        after = list(predict([edit.apply(text) for text in rows]))
        unchanged = sum(a == b for a, b in zip(before, after, strict=True)) / len(rows)
        ok = unchanged >= settings.min_unchanged_rate
        found.append(
            Criterion(
                "behaviour",
                f"invariant to: {edit.describe()}",
                ok,
                f"{unchanged:.1%} of {len(rows)} predictions unchanged "
                f"({'>=' if ok else '<'} {settings.min_unchanged_rate:.0%})",
                value=unchanged,
                limit=settings.min_unchanged_rate,
            )
        )
    return found


def functionality_criterion(predict: Predict, settings: FunctionalityParams) -> Criterion:
    predicted = list(predict([case.text for case in settings.cases]))
    misses = [
        f"{case.text!r} -> {got} (expected {case.label})"
        for case, got in zip(settings.cases, predicted, strict=True)
        if got != case.label
    ]
    rate = 1 - len(misses) / len(settings.cases)
    ok = rate >= settings.min_pass_rate
    detail = f"{rate:.0%} of {len(settings.cases)} cases right"
    if misses:
        detail += "; missed: " + "; ".join(misses)
    return Criterion(
        "behaviour", "minimum functionality", ok, detail, value=rate, limit=settings.min_pass_rate
    )


def behaviour_criteria(
    predict: Predict, texts: list[str], settings: BehaviourParams
) -> list[Criterion]:
    found: list[Criterion] = []
    if settings.invariance is not None:
        found += invariance_criteria(predict, texts, settings.invariance)
    if settings.functionality is not None:
        found.append(functionality_criterion(predict, settings.functionality))
    return found


def contract_criterion(report: dict[str, Any]) -> Criterion:
    passed = report.get("passed")
    if not isinstance(passed, bool):
        raise InputError("the data contract report has no boolean 'passed'")
    failed = report.get("failed", [])
    detail = (
        "every rule passed"
        if passed
        else "; ".join(f"{f['where']}: {f['rule']}: {f['detail']}" for f in failed)
    )
    return Criterion("contract", "data contract", passed, detail)

"""The quality gate: every criterion a candidate must meet, as pure functions.

Groups: thresholds on the evaluation metrics (per task); a paired comparison with the
champion on the same test rows (see paired.py); behavioural checks on text; the data
contract's verdict. The gate passes only when every criterion passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlship.config.params import (
    AttackParams,
    BehaviourParams,
    FunctionalityParams,
    GateParams,
    InvarianceParams,
    Task,
)
from mlship.errors import InputError
from mlship.gate.attacks import EvasionResult, MembershipResult
from mlship.gate.paired import mcnemar_exact, paired_bootstrap, wilcoxon_errors

Answer = str | float  # a label (classification) or a value (regression)
LATENCY_METRICS = ("batch_us_per_row",)  # measured (metrics/latency.json), not computed
Predict = Callable[[list[str]], Sequence[Answer]]


@dataclass(frozen=True)
class Criterion:
    group: str  # threshold | baseline | champion | behaviour | contract | attack | loadtest
    name: str
    passed: bool
    detail: str
    value: float | None = None
    limit: float | None = None
    champion: float | None = None
    interval: tuple[float, float] | None = None
    p_value: float | None = None
    difference: float | None = None  # against the champion; above 0: the candidate is better

    @property
    def worse_than_champion(self) -> bool:
        """Passed within the margin, yet worse than the champion: shown as a warning."""
        return self.group == "champion" and self.difference is not None and self.difference < 0


def _number(metrics: dict[str, Any], key: str, source: str) -> float:
    """A metric that must be present and finite; NaN or a gap can never pass."""
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{source}: {key!r} is missing or not a number")
    if not math.isfinite(value):
        raise InputError(f"{source}: {key!r} is {value}, not a finite number")
    return float(value)


def _bound(name: str, value: float, limit: float, at_most: bool) -> Criterion:
    ok = value <= limit if at_most else value >= limit
    relation = ("<=" if ok else ">") if at_most else (">=" if ok else "<")
    rule = f"{name} {'<=' if at_most else '>='} {limit}"
    return Criterion(
        "threshold", rule, ok, f"{name} = {value:.4f} {relation} {limit}", value, limit
    )


def threshold_criteria(
    metrics: dict[str, Any], latency: dict[str, Any], gate: GateParams, task: Task
) -> list[Criterion]:
    """Each threshold params.yaml sets (GateParams declares them) against the evaluation, or
    the measured latency; `per_class.<metric>` bounds every class's."""
    found = []
    for declared, limit in gate.set_thresholds(task):
        at_most = declared.bound == "max"
        if declared.metric in LATENCY_METRICS:
            name = declared.metric.removeprefix("batch_")
            found.append(_bound(name, _number(latency, declared.metric, "latency"), limit, at_most))
        elif declared.metric.startswith("per_class."):
            measure = declared.metric.removeprefix("per_class.")
            per_class = metrics.get("per_class")
            if not isinstance(per_class, dict) or not per_class:
                raise InputError("metrics: 'per_class' is missing")
            for label, values in per_class.items():
                value = _number(values, measure, f"metrics: per_class.{label}")
                found.append(_bound(f"{measure}[{label}]", value, limit, at_most))
        else:
            value = _number(metrics, declared.metric, "metrics")
            found.append(_bound(declared.metric, value, limit, at_most))
    return found


def champion_criteria(
    actual: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    classes: list[str],
    gate: GateParams,
    champion_version: str,
    task: Task,
) -> list[Criterion]:
    """Per compared metric: the paired difference's interval must lie above -margin
    (non-inferiority), or above 0 with the paired test's p < alpha (require_better; the
    test is attached to the first metric)."""
    settings = gate.champion
    test = (mcnemar_exact if task == "classification" else wilcoxon_errors)(
        actual, candidate, champion
    )
    found = []
    for i, metric in enumerate(settings.compared(task)):
        paired = paired_bootstrap(metric, actual, candidate, champion, classes, settings)
        bound = 0.0 if settings.require_better else -settings.margin
        passed = paired.low > bound
        p_value = test.p_value if i == 0 else None
        if settings.require_better and p_value is not None:
            passed = passed and p_value < gate.alpha
        rule = (
            "better than"
            if settings.require_better
            else (f"non-inferior (margin {settings.margin}) to")
        )
        what = "relative error reduction" if task == "regression" else "difference"
        detail = (
            f"{metric}: candidate {paired.candidate:.4f} vs champion v{champion_version} "
            f"{paired.champion:.4f}, {what} {paired.difference:+.4f}, "
            f"{settings.confidence:.0%} CI [{paired.low:+.4f}, {paired.high:+.4f}]"
        )
        if p_value is not None:
            detail += f", {test.describe()}"
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
                difference=paired.difference,
            )
        )
    return found


def baseline_criterion(
    actual: np.ndarray,
    candidate: np.ndarray,
    answer: Answer,
    classes: list[str],
    gate: GateParams,
    task: Task,
) -> Criterion:
    """The candidate against the trivial model that answers `answer` to every test row: the
    paired bootstrap interval of the gain on the baseline metric must lie above the margin
    (the champion's resamples, confidence and seed)."""
    settings = gate.baseline
    metric = settings.compared(task)
    trivial = np.full(len(actual), answer, dtype=float if task == "regression" else object)
    paired = paired_bootstrap(metric, actual, candidate, trivial, classes, gate.champion)
    what = "relative error reduction" if task == "regression" else "gain"
    answers = f"the training mean {answer}" if task == "regression" else f"always {answer!r}"
    return Criterion(
        "baseline",
        f"{metric} beats the trivial baseline by > {settings.margin}",
        paired.low > settings.margin,
        f"{metric}: candidate {paired.candidate:.4f} vs baseline ({answers}) "
        f"{paired.champion:.4f}, {what} {paired.difference:+.4f}, "
        f"{gate.champion.confidence:.0%} CI [{paired.low:+.4f}, {paired.high:+.4f}]",
        value=paired.candidate,
        limit=settings.margin,
        champion=paired.champion,
        interval=(paired.low, paired.high),
        difference=paired.difference,
    )


# --- behaviour ------------------------------------------------------------------------


def _same(before: Answer, after: Answer, tolerance: float) -> bool:
    if isinstance(before, str) or isinstance(after, str):
        return before == after
    return abs(float(before) - float(after)) <= tolerance


def invariance_criteria(
    predict: Predict, texts: list[str], settings: InvarianceParams
) -> list[Criterion]:
    rows = texts[: settings.rows]
    before = list(predict(rows))
    found = []
    moved = f" by more than {settings.tolerance}" if settings.tolerance else ""
    for edit in settings.edits:
        after = list(predict([edit.apply(text) for text in rows]))
        unchanged = sum(
            _same(a, b, settings.tolerance) for a, b in zip(before, after, strict=True)
        ) / len(rows)
        ok = unchanged >= settings.min_unchanged_rate
        found.append(
            Criterion(
                "behaviour",
                f"invariant to: {edit.describe()}",
                ok,
                f"{unchanged:.1%} of {len(rows)} predictions did not move{moved} "
                f"({'>=' if ok else '<'} {settings.min_unchanged_rate:.0%})",
                value=unchanged,
                limit=settings.min_unchanged_rate,
            )
        )
    return found


def functionality_criterion(predict: Predict, settings: FunctionalityParams) -> Criterion:
    predicted = list(predict([case.text for case in settings.cases]))
    misses = [
        f"{case.text!r} -> {got} (expected {case.expects()})"
        for case, got in zip(settings.cases, predicted, strict=True)
        if not case.accepts(got)
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


def provenance_criterion(differing: list[str], source: str) -> Criterion:
    """Whether the splits judged are the ones ingest derives from the declared source."""
    if not differing:
        return Criterion("contract", "splits derived from the source", True, f"from {source}")
    return Criterion(
        "contract",
        "splits derived from the source",
        False,
        f"{' and '.join(differing)} differ from what ingest derives from {source} with these "
        "params: the splits were replaced or edited after ingest",
    )


def attack_criteria(
    membership: MembershipResult | None,
    evasion: EvasionResult | None,
    settings: AttackParams,
) -> list[Criterion]:
    """The attacks' results against their limits (an attack not run adds none)."""
    found = []
    if membership is not None:
        limit = settings.membership.max_advantage
        found.append(
            Criterion(
                "attack",
                f"membership inference advantage <= {limit}",
                membership.advantage <= limit,
                f"ART black-box attack on {membership.rows} train and {membership.rows} test "
                f"rows: true-positive rate {membership.true_positive_rate:.3f}, false-positive "
                f"rate {membership.false_positive_rate:.3f}",
                membership.advantage,
                limit,
            )
        )
    if evasion is not None and settings.evasion is not None:
        limit = settings.evasion.max_success_rate
        budget = (
            f" within {settings.evasion.budget} standard deviations"
            if evasion.median_distance is not None or "HopSkipJump" in evasion.method
            else " by one edit"
        )
        nearest = (
            f"; median distance to a changed answer {evasion.median_distance}"
            if evasion.median_distance is not None
            else ""
        )
        found.append(
            Criterion(
                "attack",
                f"evasion success rate <= {limit}",
                evasion.success_rate <= limit,
                f"{evasion.method}: {evasion.evaded} of {evasion.attacked} correctly answered "
                f"test rows answered otherwise{budget}{nearest}",
                round(evasion.success_rate, 4),
                limit,
            )
        )
    return found

from typing import Any

import numpy as np
import pytest

from mlship.config.params import (
    BaselineParams,
    ChampionParams,
    FunctionalityParams,
    GateParams,
    InvarianceParams,
)
from mlship.errors import InputError
from mlship.gate import criteria

GATE = GateParams(
    min_accuracy=0.8, min_macro_f1=0.7, min_class_recall=0.5, max_log_loss=0.6, max_us_per_row=100
)
METRICS: dict[str, Any] = {
    "accuracy": 0.85,
    "macro_f1": 0.8,
    "log_loss": 0.4,
    "per_class": {"great": {"recall": 0.9}, "other": {"recall": 0.6}},
}
LATENCY = {"batch_us_per_row": 50.0}


def _names_failed(found: list[criteria.Criterion]) -> list[str]:
    return [c.name for c in found if not c.passed]


def test_thresholds_pass_on_good_metrics() -> None:
    found = criteria.threshold_criteria(METRICS, LATENCY, GATE, "classification")
    assert len(found) == 6
    assert _names_failed(found) == []


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        ({"accuracy": 0.79}, "accuracy >= 0.8"),
        ({"macro_f1": 0.5}, "macro_f1 >= 0.7"),
        ({"log_loss": 0.61}, "log_loss <= 0.6"),
        (
            {"per_class": {"great": {"recall": 0.9}, "other": {"recall": 0.4}}},
            "recall[other] >= 0.5",
        ),
    ],
)
def test_each_threshold_fails_with_its_numbers(change: dict[str, Any], failed: str) -> None:
    found = criteria.threshold_criteria({**METRICS, **change}, LATENCY, GATE, "classification")
    assert _names_failed(found) == [failed]
    detail = next(c.detail for c in found if not c.passed)
    assert any(char.isdigit() for char in detail)


def test_latency_budget() -> None:
    found = criteria.threshold_criteria(
        METRICS, {"batch_us_per_row": 150.0}, GATE, "classification"
    )
    assert _names_failed(found) == ["us_per_row <= 100.0"]


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({**METRICS, "accuracy": float("nan")}, "'accuracy' is nan"),
        ({k: v for k, v in METRICS.items() if k != "macro_f1"}, "'macro_f1' is missing"),
        ({**METRICS, "log_loss": "0.4"}, "'log_loss' is missing or not a number"),
        ({**METRICS, "per_class": {}}, "'per_class' is missing"),
    ],
)
def test_missing_or_nan_metrics_never_pass(metrics: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        criteria.threshold_criteria(metrics, LATENCY, GATE, "classification")


def _pair(better_rows: int, worse_rows: int, n: int = 400) -> tuple[np.ndarray, ...]:
    """The candidate fixes `better_rows` of the champion's errors and breaks `worse_rows`."""
    actual = np.array(["a", "b"] * (n // 2))
    champion = actual.copy()
    champion[:100] = np.where(actual[:100] == "a", "b", "a")  # the champion misses 100 rows
    candidate = champion.copy()
    candidate[:better_rows] = actual[:better_rows]
    flip = slice(200, 200 + worse_rows)
    candidate[flip] = np.where(actual[flip] == "a", "b", "a")
    return actual, candidate, champion


@pytest.mark.parametrize(
    ("better", "worse", "require_better", "passes"),
    [
        (0, 0, False, True),  # same model: non-inferior
        (40, 0, True, True),  # clearly better: passes even when better is required
        (0, 0, True, False),  # same model is not better
        (0, 40, False, False),  # clearly worse: inferior beyond the margin
    ],
)
def test_champion_verdicts(better: int, worse: int, require_better: bool, passes: bool) -> None:
    actual, candidate, champion = _pair(better, worse)
    settings = GATE.model_copy(
        update={"champion": ChampionParams(require_better=require_better, margin=0.01)}
    )
    found = criteria.champion_criteria(
        actual, candidate, champion, ["a", "b"], settings, "7", "classification"
    )
    assert [c.passed for c in found] == [passes, passes]
    accuracy = found[0]
    assert accuracy.p_value is not None and accuracy.interval is not None
    assert "champion v7" in accuracy.detail


def test_invariance_and_functionality_with_a_keyword_model() -> None:
    def predict(texts: list[str]) -> list[str]:
        return ["great" if "good" in t else "other" for t in texts]

    texts = ["good stuff", "bad stuff", "good!", "meh"]
    invariance = InvarianceParams.model_validate(
        {
            "min_unchanged_rate": 1.0,
            "edits": [{"append": " ok"}, {"replace": "good", "with": "fine"}],
        }
    )
    found = criteria.invariance_criteria(predict, texts, invariance)
    assert [c.passed for c in found] == [True, False]
    assert found[1].value == 0.5
    cases = FunctionalityParams.model_validate(
        {
            "min_pass_rate": 1.0,
            "cases": [{"text": "good", "label": "great"}, {"text": "x", "label": "great"}],
        }
    )
    result = criteria.functionality_criterion(predict, cases)
    assert not result.passed
    assert "'x' -> other (expected great)" in result.detail


def test_contract_verdict_is_carried_over() -> None:
    failed = {"where": "train.score", "rule": "class_count", "detail": "1 class(es)"}
    assert not criteria.contract_criterion({"passed": False, "failed": [failed]}).passed
    with pytest.raises(InputError):
        criteria.contract_criterion({})


def test_regression_behaviour_uses_a_tolerance_and_value_ranges() -> None:
    def predict(texts: list[str]) -> list[float]:
        return [float(len(t)) for t in texts]  # longer text, higher value

    invariance = InvarianceParams.model_validate(
        {
            "min_unchanged_rate": 1.0,
            "tolerance": 2.0,
            "edits": [{"append": "!"}, {"append": " and more"}],
        }
    )
    found = criteria.invariance_criteria(predict, ["abc", "de"], invariance)
    assert [c.passed for c in found] == [True, False]  # +1 is within 2, +9 is not
    assert "did not move by more than 2.0" in found[0].detail
    cases = FunctionalityParams.model_validate(
        {"cases": [{"text": "abcd", "min": 3, "max": 5}, {"text": "a", "min": 2}]}
    )
    result = criteria.functionality_criterion(predict, cases)
    assert result.value == 0.5 and "'a' -> 1.0 (expected 2.0..inf)" in result.detail


def test_a_model_less_accurate_than_always_answering_the_majority_fails_the_baseline() -> None:
    # 92% of the rows are "yes": the constant is 0.92 accurate; the model answers "no" to
    # 8 of the 92 "yes" rows and finds 3 of the 8 "no" rows: 0.87 accurate
    actual = np.array(["yes"] * 92 + ["no"] * 8, dtype=object)
    candidate = actual.copy()
    candidate[:8] = "no"
    candidate[92:97] = "yes"
    found = criteria.baseline_criterion(
        actual, candidate, "yes", ["no", "yes"], GATE, "classification"
    )
    assert not found.passed and found.group == "baseline"
    assert (found.value, found.champion) == pytest.approx((0.87, 0.92))
    assert found.interval is not None and found.interval[0] < 0  # not above the margin 0
    assert "baseline (always 'yes') 0.9200" in found.detail
    # on balanced accuracy the same model beats the constant (0.644 against 0.5)
    balanced = GATE.model_copy(update={"baseline": BaselineParams(metric="balanced_accuracy")})
    better = criteria.baseline_criterion(
        actual, candidate, "yes", ["no", "yes"], balanced, "classification"
    )
    assert better.value == pytest.approx((84 / 92 + 3 / 8) / 2) and better.champion == 0.5


def test_a_regression_must_cut_the_error_of_the_training_mean_by_the_margin() -> None:
    rng = np.random.default_rng(0)
    actual = rng.normal(100, 10, 400)
    good = actual + rng.normal(0, 2, 400)  # a fifth of the mean's error
    settings = GATE.model_copy(update={"baseline": BaselineParams(margin=0.5)})
    passed = criteria.baseline_criterion(actual, good, 100.0, [], settings, "regression")
    assert passed.passed and passed.difference == pytest.approx(0.8, abs=0.05)
    noise = actual.mean() + rng.normal(0, 10, 400)  # no better than the mean
    failed = criteria.baseline_criterion(actual, noise, 100.0, [], settings, "regression")
    assert not failed.passed and "the training mean 100.0" in failed.detail

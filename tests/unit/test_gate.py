import math
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from mlship import criteria
from mlship.config import ChampionParams, FunctionalityParams, GateParams, InvarianceParams
from mlship.errors import InputError

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
    found = criteria.threshold_criteria(METRICS, LATENCY, GATE)
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
    found = criteria.threshold_criteria({**METRICS, **change}, LATENCY, GATE)
    assert _names_failed(found) == [failed]
    detail = next(c.detail for c in found if not c.passed)
    assert any(char.isdigit() for char in detail)


def test_latency_budget() -> None:
    found = criteria.threshold_criteria(METRICS, {"batch_us_per_row": 150.0}, GATE)
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
        criteria.threshold_criteria(metrics, LATENCY, GATE)


def test_mcnemar_exact_matches_the_binomial_by_hand() -> None:
    # given 30 rows only the candidate gets right and 10 only the champion gets right
    actual = np.array(["a"] * 100)
    candidate = np.array(["a"] * 30 + ["b"] * 10 + ["a"] * 60)
    champion = np.array(["b"] * 30 + ["a"] * 10 + ["a"] * 60)
    result = criteria.mcnemar_exact(actual, candidate, champion)
    # then p = 2 * P(X <= 10), X ~ Binomial(40, 1/2)
    expected = 2 * sum(math.comb(40, k) for k in range(11)) / 2**40
    assert (result.candidate_only, result.champion_only) == (30, 10)
    assert result.p_value == pytest.approx(expected, rel=1e-9)


def test_mcnemar_without_discordant_rows_is_one() -> None:
    same = np.array(["a", "b"])
    assert criteria.mcnemar_exact(same, same, same).p_value == 1.0


def test_vectorised_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    classes = ["a", "b", "c"]
    actual = rng.choice(classes, size=(5, 60))
    predicted = rng.choice(classes, size=(5, 60))
    for row in range(5):
        assert criteria.macro_f1_rows(actual, predicted, classes)[row] == pytest.approx(
            f1_score(actual[row], predicted[row], labels=classes, average="macro", zero_division=0)
        )
        assert criteria.balanced_accuracy_rows(actual, predicted, classes)[row] == pytest.approx(
            balanced_accuracy_score(actual[row], predicted[row])
        )


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


def test_identical_models_have_a_zero_interval() -> None:
    actual, _, champion = _pair(0, 0)
    paired = criteria.paired_bootstrap(
        "accuracy", actual, champion, champion, ["a", "b"], ChampionParams()
    )
    assert (paired.difference, paired.low, paired.high) == (0.0, 0.0, 0.0)


def test_bootstrap_is_seeded_and_brackets_the_true_difference() -> None:
    actual, candidate, champion = _pair(better_rows=60, worse_rows=0)
    settings = ChampionParams(resamples=1000, seed=3)
    first = criteria.paired_bootstrap("accuracy", actual, candidate, champion, ["a", "b"], settings)
    again = criteria.paired_bootstrap("accuracy", actual, candidate, champion, ["a", "b"], settings)
    assert first == again
    assert first.difference == pytest.approx(60 / 400)
    assert 0 < first.low < first.difference < first.high


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
    found = criteria.champion_criteria(actual, candidate, champion, ["a", "b"], settings, "7")
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

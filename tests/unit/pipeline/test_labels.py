"""Any scikit-learn-compatible classifier takes the declared labels ("yes"/"no") as they are:
XGBoost's (which wants the indices 0..n-1) and LightGBM's are trained on label indices inside
EncodedLabels and answer the labels; the model file keeps them through skops' trust list;
the server's compiled fast path still applies; scikit-learn's own are left unwrapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlship.card import ModelCard
from mlship.pipeline.artifacts import load_model, save_model
from mlship.pipeline.features import feature_frame
from mlship.pipeline.labels import EncodedLabels
from mlship.pipeline.train import fit
from mlship.serving.model import load_directory
from tests.conftest import make_params
from tests.unit.pipeline.test_train import TABULAR, tabular_frame

CLASSIFIERS = {
    "xgboost.XGBClassifier": (
        {"n_estimators": 20, "max_depth": 3, "n_jobs": 1},
        ("xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"),
    ),
    "lightgbm.LGBMClassifier": (
        {"n_estimators": 20, "min_child_samples": 2, "verbose": -1, "n_jobs": 1},
        ("collections.OrderedDict", "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier"),
    ),
}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_a_classifier_outside_scikit_learn_takes_the_labels_as_they_are(
    name: str, tmp_path: Path
) -> None:
    arguments, trusted = CLASSIFIERS[name]
    model: dict[str, Any] = {"kind": "estimator", "class": name, "params": arguments}
    params = make_params(train={"model": model, "trusted_types": list(trusted)}, **TABULAR)
    frame = tabular_frame(90)  # did the bird come from species c? "yes" or "no"
    frame["species"] = np.where(frame["species"] == "c", "yes", "no")
    fitted = fit(params, frame)
    final = fitted.named_steps["model"]
    assert isinstance(final, EncodedLabels) and list(final.classes_) == ["no", "yes"]
    features = feature_frame(frame, params.data)
    labels = fitted.predict(features)
    assert set(labels) <= {"no", "yes"} and (labels == frame["species"]).mean() > 0.9
    probabilities = fitted.predict_proba(features)
    assert (np.asarray(fitted.classes_)[probabilities.argmax(axis=1)] == labels).all()
    # saved and loaded under the trust list, served with the labels and a compiled path
    card = ModelCard.model_validate(
        {
            "target": "species",
            "classes": ["no", "yes"],
            "trusted_types": list(trusted),
            "features": {"categorical": ["island"], "numeric": ["mass"]},
        }
    )
    save_model(fitted, card, tmp_path)
    again = load_model(tmp_path, card)
    assert (again.predict(features) == labels).all()
    served = load_directory(tmp_path)
    served.warm()
    assert served.classes == ("no", "yes")
    assert "treelite" in served.scoring_path, served.info()["not_used"]
    rows = {"island": list(frame["island"].fillna("south")), "mass": list(frame["mass"].fillna(0))}
    scored = served.predict(rows)
    assert scored.labels is not None and set(scored.labels) <= {"no", "yes"}


def test_scikit_learn_classifiers_are_left_as_they_are() -> None:
    forest = {"kind": "estimator", "class": "sklearn.ensemble.RandomForestClassifier"}
    fitted = fit(make_params(train={"model": forest | {"params": {"n_estimators": 5}}}, **TABULAR),
                 tabular_frame())  # fmt: skip
    assert type(fitted.named_steps["model"]).__name__ == "RandomForestClassifier"

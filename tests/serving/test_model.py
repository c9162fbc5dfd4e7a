"""The served model's two scoring paths give the pipeline's own answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlship.artifacts import load_model
from mlship.card import ModelCard
from mlship.features import feature_frame
from mlship.serving.model import ServedModel, load_directory, text_fast_path
from mlship.train import fit
from tests.conftest import make_params
from tests.unit.test_train import TABULAR, tabular_frame

REVIEWS = ["great taste, would buy again", "stale and bland", "", "item 7 arrived broken"]


def test_text_models_use_the_fast_path_with_identical_answers(model_dir: Path) -> None:
    served = load_directory(model_dir, "m")
    served.warm()
    assert served._fast is not None
    params = make_params()
    expected = load_model(model_dir).predict_proba(
        feature_frame(pd.DataFrame({"review": REVIEWS}), params.data)
    )
    assert np.allclose(
        served.predict({"review": REVIEWS}).probabilities, expected, rtol=0, atol=1e-12
    )


def test_tabular_models_keep_the_pipeline_path() -> None:
    params = make_params(train={"model": {"kind": "gradient_boosting", "max_iter": 20}}, **TABULAR)
    frame = tabular_frame()
    pipeline = fit(params, frame)
    assert text_fast_path(pipeline) is None
    card = ModelCard.model_validate(
        {"features": {"categorical": ["island"], "numeric": ["mass"]}, "target": "species"}
    )
    served = ServedModel(pipeline, card, "m", "1", None, "memory")
    served.warm()
    assert served._fast is None
    columns = {"island": ["north", None], "mass": [30.0, float("nan")]}
    expected = pipeline.predict_proba(feature_frame(pd.DataFrame(columns), params.data))
    assert np.array_equal(served.predict(columns).probabilities, expected)

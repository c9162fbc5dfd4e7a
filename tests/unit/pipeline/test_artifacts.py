from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlship.card import Features, ModelCard
from mlship.config.params import Params
from mlship.errors import InputError
from mlship.pipeline.artifacts import load_model, save_model
from mlship.pipeline.features import feature_frame
from mlship.pipeline.train import fit
from mlship.vcs import git_state
from tests.conftest import text_frame


def shout(values: object) -> object:
    return values


def test_model_round_trips_through_skops(tmp_path: Path, params: Params) -> None:
    frame = text_frame(10)
    pipeline = fit(params, frame)
    card = ModelCard(
        features=Features(text=("review",)), target="score", classes=("great", "other")
    )
    save_model(pipeline, card, tmp_path)
    loaded = load_model(tmp_path)
    features = feature_frame(frame, params.data)
    assert np.array_equal(loaded.predict_proba(features), pipeline.predict_proba(features))
    assert ModelCard.load(tmp_path) == card


def test_types_outside_the_trust_policy_are_refused(tmp_path: Path) -> None:
    # given a model file holding a function from outside scikit-learn/NumPy/SciPy
    sio.dump(Pipeline([("custom", FunctionTransformer(shout))]), tmp_path / "model.skops")
    # when loaded / then it is refused, naming the type
    with pytest.raises(InputError, match=r"outside the trust policy.*shout"):
        load_model(tmp_path)


def test_missing_and_corrupt_model_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no model file"):
        load_model(tmp_path)
    (tmp_path / "model.skops").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"model\.skops"):
        load_model(tmp_path)


def test_git_state_outside_a_checkout(tmp_path: Path) -> None:
    assert git_state(tmp_path).sha == "unknown"

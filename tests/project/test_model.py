"""The model params.yaml declares, built from the team's code and fitted on a sample: it
answers every row, saves and loads under the trust list, and the server's scoring paths
give the pipeline's own answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlship.config.params import Params
from mlship.paths import stage_dependencies
from mlship.pipeline import artifacts
from mlship.pipeline.features import feature_frame
from mlship.pipeline.importing import untracked_code
from mlship.serving.model import load_directory
from mlship.serving.protocols import check_columns
from mlship.stages.pipeline import describe, named_code
from tests.conftest import REPO


def _answers(model: Any, frame: pd.DataFrame, params: Params) -> np.ndarray:
    rows = feature_frame(frame, params.data)
    if params.data.task == "classification" and hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(rows))
    return np.asarray(model.predict(rows))


def _assert_same(got: np.ndarray, want: np.ndarray, where: str = "") -> None:
    """Numbers within 1e-6 (probabilities, predictions), labels equal."""
    if got.dtype.kind in "fc":
        assert np.abs(got - want.astype(float)).max() <= 1e-6, where
    else:
        assert (got.astype(str) == want.astype(str)).all(), where


def test_the_model_code_is_a_dependency_of_the_train_stage(params: Params) -> None:
    """Else a change to it would not retrain, and a stale model could pass the gate."""
    dependencies = stage_dependencies(REPO / "dvc.yaml", "train")
    assert untracked_code(named_code(params), dependencies, REPO) == []


def test_the_model_answers_every_row_with_the_task_s_output(
    params: Params, fitted: Any, test_sample: pd.DataFrame
) -> None:
    rows = feature_frame(test_sample, params.data)
    predicted = np.asarray(fitted.predict(rows))
    assert len(predicted) == len(test_sample)  # N rows in, N answers out
    if params.data.task == "regression":
        assert np.isfinite(predicted.astype(float)).all()
        return
    classes = {str(c) for c in fitted.classes_}
    assert {str(label) for label in predicted} <= classes
    if params.validate_.labels is not None:
        assert classes <= set(params.validate_.labels)
    if hasattr(fitted, "predict_proba"):
        probabilities = np.asarray(fitted.predict_proba(rows))
        assert probabilities.shape == (len(test_sample), len(classes))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_the_saved_model_loads_under_the_trust_list_and_answers_the_same(
    params: Params,
    fitted: Any,
    train_sample: pd.DataFrame,
    test_sample: pd.DataFrame,
    tmp_path: Path,
) -> None:
    card = describe(params, params.name, fitted, train_sample, 0.0)  # refuses untrusted types
    artifacts.save_model(fitted, card, tmp_path)
    loaded = artifacts.load_model(tmp_path, card)
    _assert_same(_answers(loaded, test_sample, params), _answers(fitted, test_sample, params))


def test_the_server_gives_the_pipeline_s_answers(
    params: Params,
    fitted: Any,
    train_sample: pd.DataFrame,
    test_sample: pd.DataFrame,
    tmp_path: Path,
) -> None:
    artifacts.save_model(fitted, describe(params, params.name, fitted, train_sample, 0.0), tmp_path)
    served = load_directory(tmp_path)
    served.warm()  # keeps only the fast paths that reproduce the pipeline on checking rows
    columns = {
        c: [None if pd.isna(v) else v for v in test_sample[c]] for c in served.features.columns
    }
    check_columns(served.features, columns, "test", len(test_sample))
    expected = _answers(fitted, test_sample, params)
    for size in (1, len(test_sample)):  # single rows, then one batch
        found = [
            served.predict({c: v[i : i + size] for c, v in columns.items()})
            for i in range(0, min(len(test_sample), 50 if size == 1 else len(test_sample)), size)
        ]
        got = np.concatenate(
            [
                f.probabilities
                if f.probabilities is not None
                else (f.values if f.values is not None else f.labels)
                for f in found
            ]
        )
        _assert_same(got, expected[: len(got)], served.scoring_path)

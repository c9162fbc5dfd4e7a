"""fit(params, frame) -> a fitted scikit-learn Pipeline. No I/O; deterministic under the seed."""

from __future__ import annotations

import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from mlship.config import (
    GradientBoostingParams,
    LinearSvmParams,
    LogisticRegressionParams,
    ModelParams,
    Params,
)
from mlship.errors import InputError
from mlship.features import build_preprocessor, feature_frame


def build_estimator(model: ModelParams, seed: int) -> ClassifierMixin:
    match model:
        case LogisticRegressionParams():
            return LogisticRegression(
                C=model.C,
                max_iter=model.max_iter,
                class_weight=model.class_weight,
                random_state=seed,
            )
        case LinearSvmParams():
            svm = LinearSVC(
                C=model.C,
                max_iter=model.max_iter,
                class_weight=model.class_weight,
                random_state=seed,
            )
            return CalibratedClassifierCV(svm, method=model.calibration, cv=model.calibration_folds)
        case GradientBoostingParams():
            return HistGradientBoostingClassifier(
                learning_rate=model.learning_rate,
                max_iter=model.max_iter,
                max_leaf_nodes=model.max_leaf_nodes,
                max_depth=model.max_depth,
                l2_regularization=model.l2_regularization,
                class_weight=model.class_weight,
                random_state=seed,
            )


def build_pipeline(params: Params) -> Pipeline:
    dense = params.train.model.kind == "gradient_boosting"
    return Pipeline(
        [
            ("features", build_preprocessor(params.data, params.train.text, dense=dense)),
            ("model", build_estimator(params.train.model, params.data.seed)),
        ]
    )


def fit(params: Params, train: pd.DataFrame) -> Pipeline:
    labels = train[params.data.target]
    if labels.isna().any():
        raise InputError(f"target column {params.data.target!r} has missing labels")
    if labels.nunique() < 2:
        raise InputError(
            f"target column {params.data.target!r} has a single class "
            f"{labels.iloc[0]!r}; a classifier needs at least 2"
        )
    pipeline = build_pipeline(params)
    try:
        pipeline.fit(feature_frame(train, params.data), labels.astype(str))
    except ValueError as error:
        # e.g. every text row pruned by min_df: name the stage and the cause
        raise InputError(f"training failed on the given data and params: {error}") from error
    compact_vocabularies(pipeline)
    return pipeline


def compact_vocabularies(pipeline: Pipeline) -> None:
    """Store TF-IDF vocabulary indices as plain ints instead of NumPy scalars.

    skops writes every NumPy scalar as its own archive member, which made saving a
    35k-term vocabulary take 19 s instead of 1 s; predictions are unchanged.
    """
    for _, transformer, _ in pipeline.named_steps["features"].transformers_:
        if isinstance(transformer, TfidfVectorizer):
            transformer.vocabulary_ = {
                term: int(index) for term, index in transformer.vocabulary_.items()
            }

"""Class labels for estimators with label rules of their own.

XGBoost's classifier takes only the class indices 0..n-1 ("Invalid classes inferred from
unique values of y"), others want numbers too; scikit-learn's own take any labels. So a
classifier from outside scikit-learn, named by import path or built by the team's factory,
is trained on the indices of the declared labels and answers the labels: EncodedLabels
holds the estimator and the labels in their index order (the order of its probability
columns), so the model card, the server and every report see the labels of params.yaml,
unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import available_if


def _inner_has(method: str) -> Any:
    return lambda wrapper: hasattr(wrapper.estimator, method)


class EncodedLabels(ClassifierMixin, BaseEstimator):
    """`estimator` trained on the label indices; `classes_` the labels, sorted as
    scikit-learn sorts them, so probability column i is the probability of classes_[i]."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, features: Any, labels: Any) -> EncodedLabels:
        classes, indices = np.unique(np.asarray(labels).astype(str), return_inverse=True)
        self.classes_ = classes
        self.estimator_ = clone(self.estimator).fit(features, indices)
        return self

    def predict(self, features: Any) -> np.ndarray:
        indices = np.asarray(self.estimator_.predict(features)).astype(np.int64).ravel()
        labels: np.ndarray = self.classes_[indices]
        return labels

    @available_if(_inner_has("predict_proba"))  # type: ignore[untyped-decorator]
    def predict_proba(self, features: Any) -> np.ndarray:
        probabilities: np.ndarray = self.estimator_.predict_proba(features)
        return probabilities

    @available_if(_inner_has("decision_function"))  # type: ignore[untyped-decorator]
    def decision_function(self, features: Any) -> np.ndarray:
        scores: np.ndarray = self.estimator_.decision_function(features)
        return scores


def from_scikit_learn(estimator: Any) -> bool:
    return type(estimator).__module__.split(".")[0] == "sklearn"


def encode_labels(model: Any) -> Any:
    """The classifier (or a Pipeline's final classifier) wrapped in EncodedLabels, unless it
    is scikit-learn's own."""
    if isinstance(model, Pipeline):  # unfitted, just built: its last step is replaced
        name, final = model.steps[-1]
        if not from_scikit_learn(final):
            model.steps[-1] = (name, EncodedLabels(final))
        return model
    return model if from_scikit_learn(model) else EncodedLabels(model)


def unwrapped(estimator: Any) -> Any:
    """The estimator EncodedLabels holds (fitted, when it is), or `estimator` itself."""
    if isinstance(estimator, EncodedLabels):
        return getattr(estimator, "estimator_", estimator.estimator)
    return estimator

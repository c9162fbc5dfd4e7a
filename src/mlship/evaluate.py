"""Held-out evaluation: metrics, per-row predictions, curve points, latency.

Quality metrics are a pure function of model and data, so the same commit and data give
byte-identical metrics; latency is measured, so it is kept apart from them.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from mlship.config import DataParams
from mlship.features import feature_frame

SINGLE_ROW_CALLS = 50


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    roc: list[dict[str, Any]]
    precision_recall: list[dict[str, Any]]

    def scalars(self) -> dict[str, float]:
        """The metrics MLflow can chart: every number, and each class's recall and precision."""
        found = {
            key: float(value)
            for key, value in self.metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        for label, values in self.metrics.get("per_class", {}).items():
            found[f"recall_{label}"] = values["recall"]
            found[f"precision_{label}"] = values["precision"]
        return found


def _round(value: float) -> float:
    return round(float(value), 6)


def positive_label(classes: list[str], data: DataParams) -> str:
    if data.positive_label is not None:
        if data.positive_label not in classes:
            raise ValueError(
                f"data.positive_label {data.positive_label!r} is not a class: {classes}"
            )
        return data.positive_label
    return classes[-1]


def quality_metrics(
    actual: np.ndarray, probabilities: np.ndarray, classes: list[str], data: DataParams
) -> dict[str, Any]:
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        actual, predicted, labels=classes, zero_division=0
    )
    present = sorted(set(actual))
    if len(classes) == 2:
        positive = positive_label(classes, data)
        scores = probabilities[:, classes.index(positive)]
        roc_auc = skm.roc_auc_score(actual == positive, scores) if len(present) == 2 else None
    else:
        roc_auc = (
            skm.roc_auc_score(actual, probabilities, multi_class="ovr", labels=classes)
            if present == sorted(classes)
            else None
        )
    return {
        "rows": len(actual),
        "accuracy": _round(skm.accuracy_score(actual, predicted)),
        "balanced_accuracy": _round(skm.balanced_accuracy_score(actual, predicted)),
        "macro_f1": _round(skm.f1_score(actual, predicted, labels=classes, average="macro")),
        "roc_auc": None if roc_auc is None else _round(roc_auc),
        "log_loss": _round(skm.log_loss(actual, probabilities, labels=classes)),
        "per_class": {
            label: {
                "precision": _round(precision[i]),
                "recall": _round(recall[i]),
                "f1": _round(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(classes)
        },
        "confusion_matrix": {
            "labels": classes,
            "matrix": skm.confusion_matrix(actual, predicted, labels=classes).tolist(),
        },
    }


def curve_points(
    actual: np.ndarray, probabilities: np.ndarray, classes: list[str], data: DataParams
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """ROC and precision-recall points: the positive class when binary, else one-vs-rest."""
    scored = [positive_label(classes, data)] if len(classes) == 2 else classes
    roc: list[dict[str, Any]] = []
    pr: list[dict[str, Any]] = []
    for label in scored:
        truth = actual == label
        if truth.all() or not truth.any():
            continue
        scores = probabilities[:, classes.index(label)]
        fpr, tpr, _ = skm.roc_curve(truth, scores)
        roc += [
            {"class": label, "fpr": _round(x), "tpr": _round(y)}
            for x, y in zip(fpr, tpr, strict=True)
        ]
        precision, recall, _ = skm.precision_recall_curve(truth, scores)
        pr += [
            {"class": label, "recall": _round(r), "precision": _round(p)}
            for r, p in zip(recall, precision, strict=True)
        ]
    return roc, pr


def evaluate_model(pipeline: Pipeline, test: pd.DataFrame, data: DataParams) -> Evaluation:
    features = feature_frame(test, data)
    actual = test[data.target].astype(str).to_numpy()
    classes = [str(c) for c in pipeline.classes_]
    probabilities = pipeline.predict_proba(features)
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    predictions = pd.DataFrame(
        {"row": np.arange(len(test)), "actual": actual, "predicted": predicted}
    )
    for i, label in enumerate(classes):
        predictions[f"proba_{label}"] = np.round(probabilities[:, i], 6)
    roc, pr = curve_points(actual, probabilities, classes, data)
    return Evaluation(
        metrics=quality_metrics(actual, probabilities, classes, data),
        predictions=predictions,
        roc=roc,
        precision_recall=pr,
    )


def measure_latency(pipeline: Pipeline, test: pd.DataFrame, data: DataParams) -> dict[str, Any]:
    """Per-row cost in a batch, and the cost of one single-row call (median of several)."""
    features = feature_frame(test, data)
    start = time.perf_counter()
    pipeline.predict_proba(features)
    batch_seconds = time.perf_counter() - start
    single: list[float] = []
    for i in range(min(SINGLE_ROW_CALLS, len(features))):
        row = features.iloc[[i]]
        start = time.perf_counter()
        pipeline.predict_proba(row)
        single.append(time.perf_counter() - start)
    return {
        "batch_rows": len(features),
        "batch_us_per_row": _round(batch_seconds / len(features) * 1e6),
        "single_row_ms_median": _round(statistics.median(single) * 1e3),
    }

"""Held-out evaluation: metrics, per-row predictions, plot points, latency — per task.

Quality metrics are a pure function of model and data, so the same commit and data give
byte-identical metrics; latency is measured, so it is kept apart from them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlship.config.params import DataParams
from mlship.pipeline.features import feature_frame

SINGLE_ROW_CALLS = 50
MAPE_FLOOR = 1e-9  # targets this close to zero are left out of MAPE (it would divide by them)


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, Any]
    predictions: pd.DataFrame  # one row per test row: actual, predicted, and per task more
    roc: list[dict[str, Any]] = field(default_factory=list)  # classification
    precision_recall: list[dict[str, Any]] = field(default_factory=list)  # classification
    residuals: list[dict[str, Any]] = field(default_factory=list)  # regression

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
        for key, value in self.metrics.get("baseline", {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[f"baseline_{key}"] = float(value)
        return found

    def confusion_rows(self) -> pd.DataFrame:
        """actual/predicted per row, for `dvc plots`' confusion template (classification)."""
        if "residual" in self.predictions:
            return pd.DataFrame({"actual": [], "predicted": []})
        return self.predictions[["actual", "predicted"]]


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
    actual: np.ndarray,
    probabilities: np.ndarray | None,
    classes: list[str],
    data: DataParams,
    predicted: np.ndarray | None = None,
) -> dict[str, Any]:
    """Classification metrics; ROC AUC and log loss need probabilities."""
    if predicted is None:
        assert probabilities is not None
        predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        actual, predicted, labels=classes, zero_division=0
    )
    present = sorted(set(actual))
    roc_auc = log_loss = None
    if probabilities is not None:
        if len(classes) == 2:
            positive = positive_label(classes, data)
            scores = probabilities[:, classes.index(positive)]
            roc_auc = skm.roc_auc_score(actual == positive, scores) if len(present) == 2 else None
        elif present == sorted(classes):
            roc_auc = skm.roc_auc_score(actual, probabilities, multi_class="ovr", labels=classes)
        log_loss = skm.log_loss(actual, probabilities, labels=classes)
    return {
        "rows": len(actual),
        "accuracy": _round(skm.accuracy_score(actual, predicted)),
        "balanced_accuracy": _round(skm.balanced_accuracy_score(actual, predicted)),
        "macro_f1": _round(skm.f1_score(actual, predicted, labels=classes, average="macro")),
        "roc_auc": None if roc_auc is None else _round(roc_auc),
        "log_loss": None if log_loss is None else _round(log_loss),
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


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """RMSE, MAE, R², and MAPE over the rows whose target is not (nearly) zero."""
    error = predicted - actual
    usable = np.abs(actual) > MAPE_FLOOR
    mape = float(np.mean(np.abs(error[usable] / actual[usable]))) if usable.any() else None
    return {
        "rows": len(actual),
        "rmse": _round(np.sqrt(np.mean(error**2))),
        "mae": _round(np.mean(np.abs(error))),
        "r2": _round(skm.r2_score(actual, predicted)) if len(actual) > 1 else None,
        "mape": None if mape is None else _round(mape),
        "mape_rows": int(usable.sum()),
        "median_absolute_error": _round(np.median(np.abs(error))),
        "max_error": _round(np.max(np.abs(error))),
        "target_mean": _round(np.mean(actual)),
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


def trivial_answer(target: pd.Series, data: DataParams) -> str | float:
    """The trivial model's one answer, from the training labels: the most frequent class
    (a tie goes to the first in sorted order), or the mean (regression)."""
    if data.task == "regression":
        return _round(pd.to_numeric(target).mean())
    counts = target.astype(str).value_counts()
    return str(sorted(counts[counts == counts.max()].index)[0])


BASELINE_METRICS = {
    "classification": ("accuracy", "balanced_accuracy", "macro_f1"),
    "regression": ("rmse", "mae", "r2"),
}


def baseline_metrics(
    actual: np.ndarray, answer: str | float, classes: list[str], data: DataParams
) -> dict[str, Any]:
    """The trivial model's metrics on the test rows: it answers `answer` to every row."""
    if data.task == "regression":
        found = regression_metrics(actual, np.full(len(actual), float(answer)))
    else:
        constant = np.full(len(actual), str(answer), dtype=object)
        found = quality_metrics(actual, None, classes, data, constant)
    return {"answer": answer} | {key: found[key] for key in BASELINE_METRICS[data.task]}


def evaluate_model(
    model: Any, test: pd.DataFrame, data: DataParams, baseline: str | float | None = None
) -> Evaluation:
    """The model's metrics on `test`, and those of the trivial model answering `baseline`
    to every row (under "baseline"), when one is given."""
    found = _evaluate(model, test, data)
    if baseline is None:
        return found
    actual = found.predictions["actual"].to_numpy()
    classes = [str(c) for c in getattr(model, "classes_", ())]
    trivial = baseline_metrics(actual, baseline, classes, data)
    return replace(found, metrics={**found.metrics, "baseline": trivial})


def _evaluate(model: Any, test: pd.DataFrame, data: DataParams) -> Evaluation:
    features = feature_frame(test, data)
    rows = np.arange(len(test))
    if data.task == "regression":
        actual = pd.to_numeric(test[data.target]).to_numpy(dtype=float)
        predicted = np.asarray(model.predict(features), dtype=float)
        residual = predicted - actual
        predictions = pd.DataFrame(
            {"row": rows, "actual": actual, "predicted": predicted, "residual": residual}
        ).round(6)
        points = [
            {"actual": a, "predicted": p, "residual": r}
            for a, p, r in predictions[["actual", "predicted", "residual"]].itertuples(index=False)
        ]
        return Evaluation(regression_metrics(actual, predicted), predictions, residuals=points)
    actual = test[data.target].astype(str).to_numpy()
    classes = [str(c) for c in model.classes_]
    if not hasattr(model, "predict_proba"):
        labels = np.asarray(model.predict(features)).astype(str)
        predictions = pd.DataFrame({"row": rows, "actual": actual, "predicted": labels})
        return Evaluation(quality_metrics(actual, None, classes, data, labels), predictions)
    probabilities = model.predict_proba(features)
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    predictions = pd.DataFrame({"row": rows, "actual": actual, "predicted": predicted})
    for i, label in enumerate(classes):
        predictions[f"proba_{label}"] = np.round(probabilities[:, i], 6)
    roc, pr = curve_points(actual, probabilities, classes, data)
    return Evaluation(
        quality_metrics(actual, probabilities, classes, data),
        predictions,
        roc=roc,
        precision_recall=pr,
    )


def scorer(model: Any, task: str) -> Callable[[pd.DataFrame], Any]:
    """What a server calls for this model: class probabilities when it has them."""
    if task == "classification" and hasattr(model, "predict_proba"):
        return model.predict_proba  # type: ignore[no-any-return]
    return model.predict  # type: ignore[no-any-return]


def measure_latency(model: Any, test: pd.DataFrame, data: DataParams) -> dict[str, Any]:
    """Per-row cost in a batch, and the cost of one single-row call (median of several)."""
    features = feature_frame(test, data)
    call = scorer(model, data.task)
    start = time.perf_counter()
    call(features)
    batch_seconds = time.perf_counter() - start
    single: list[float] = []
    for i in range(min(SINGLE_ROW_CALLS, len(features))):
        row = features.iloc[[i]]
        start = time.perf_counter()
        call(row)
        single.append(time.perf_counter() - start)
    return {
        "batch_rows": len(features),
        "batch_us_per_row": _round(batch_seconds / len(features) * 1e6),
        "single_row_ms_median": _round(statistics.median(single) * 1e3),
    }

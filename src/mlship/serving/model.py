"""A loaded, warmed model and what the server needs to know about it.

Sources: a local model directory (what the image bakes in) or `models:/<name>@<alias>` /
`models:/<name>/<version>` in the MLflow registry. The task (from the model card) decides
what a prediction is: a class label (with probabilities when the model has them) or a value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlship import files
from mlship.card import METRICS_FILE, PROFILE_FILE, Features, MlflowInfo, ModelCard
from mlship.config.params import DataParams
from mlship.errors import InputError
from mlship.monitor.drift import Profile
from mlship.pipeline import artifacts
from mlship.pipeline.features import feature_frame
from mlship.pipeline.signatures import TrustPolicy, check_directory
from mlship.registry.loading import load_version, parse_models_uri, resolve_version
from mlship.serving import fastpath

log = logging.getLogger("mlship.serve")
Columns = dict[str, list[Any]]
Transform = Callable[[Columns], Any]  # checked columns -> the final estimator's input


@dataclass(frozen=True)
class Scores:
    """What one model call answers for N rows: class labels (and probabilities, when the
    model has them) for classification; values for regression."""

    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None

    def rows(self, start: int, stop: int) -> Scores:
        def part(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[start:stop]

        return Scores(part(self.labels), part(self.probabilities), part(self.values))

    def __len__(self) -> int:
        found = next(a for a in (self.labels, self.values, self.probabilities) if a is not None)
        return len(found)


def data_params(card: ModelCard) -> DataParams:
    """The card's columns as the DataParams that feature_frame types them by."""
    return DataParams(
        task=card.task,
        source="-",
        text_columns=card.features.text,
        categorical_columns=card.features.categorical,
        numeric_columns=card.features.numeric,
        target=card.target,
    )


@dataclass(frozen=True)
class ScoringPath:
    """How a batch is scored: the features (columns -> the estimator's input), then the
    estimator (-> probabilities or values)."""

    transform: fastpath.Named
    estimate: fastpath.Named

    @property
    def name(self) -> str:
        return f"{self.transform.name} + {self.estimate.name}"


SMALL_BATCH_ROWS = 128  # up to here a compiled estimator's low per-call cost wins


@dataclass(frozen=True)
class ServedModel:
    model: Any  # the fitted pipeline or estimator
    card: ModelCard
    name: str
    version: str
    alias: str | None
    source: str
    profile: Profile | None = None  # the training data's, for drift (None: not kept)
    classes: tuple[str, ...] = field(init=False)
    _data: DataParams = field(init=False, repr=False)
    _small: ScoringPath | None = field(init=False, repr=False, default=None)
    _large: ScoringPath | None = field(init=False, repr=False, default=None)
    _fallbacks: tuple[str, ...] = field(init=False, repr=False, default=())
    _warmed: bool = field(init=False, repr=False, default=False)

    def __post_init__(self) -> None:
        classes = getattr(self.model, "classes_", ()) if self.classification else ()
        object.__setattr__(self, "classes", tuple(str(c) for c in classes))
        object.__setattr__(self, "_data", data_params(self.card))

    @property
    def features(self) -> Features:
        return self.card.features

    @property
    def classification(self) -> bool:
        return self.card.task == "classification"

    @property
    def has_probabilities(self) -> bool:
        return self.classification and hasattr(self.model, "predict_proba")

    @property
    def scoring_path(self) -> str:
        small, large = self._small, self._large
        if small is None or large is None:
            return "pipeline"
        if small == large:
            return small.name
        return f"{small.name} (up to {SMALL_BATCH_ROWS} rows); {large.name} (larger batches)"

    def _scores(self, answers: Any) -> Scores:
        """Probabilities (classifiers that have them) or predictions as Scores."""
        answers = np.asarray(answers)
        if self.has_probabilities:
            probabilities = _finite(answers.astype(float))
            labels = np.asarray(self.classes)[probabilities.argmax(axis=1)]
            return Scores(labels=labels, probabilities=probabilities)
        if self.classification:
            return Scores(labels=answers.astype(str))
        return Scores(values=_finite(answers.astype(float)))

    def _pipeline(self, columns: Columns) -> Scores:
        inputs = feature_frame(pd.DataFrame(columns), self._data)
        call = self.model.predict_proba if self.has_probabilities else self.model.predict
        return self._scores(call(inputs))

    def predict(self, columns: Columns) -> Scores:
        """Scores of checked feature columns (see protocols.check_columns)."""
        rows = len(next(iter(columns.values())))
        path = self._small if rows <= SMALL_BATCH_ROWS else self._large
        if path is None:
            return self._pipeline(columns)
        return self._scores(path.estimate.call(path.transform.call(columns)))

    def warm(self) -> None:
        """Predict once, so the first request pays no lazy initialisation; then keep the
        fastest paths that give the pipeline's own answers (labels equal, numbers within
        fastpath.TOLERANCE) on rows built from the model itself. What was tried and
        refused is logged and shown in /model."""
        if self._warmed:  # loaded and warmed before the server's processes were forked
            return
        rows = fastpath.check_rows(self.model, self.features)
        expected = self._pipeline(rows)
        small, large, refused = self._checked_paths(rows, expected)
        object.__setattr__(self, "_small", small)
        object.__setattr__(self, "_large", large)
        object.__setattr__(self, "_fallbacks", tuple(refused))
        object.__setattr__(self, "_warmed", True)
        log.info("model %s v%s: %s", self.name, self.version, self.scoring_path)
        for reason in refused:
            log.info("model %s v%s: not used: %s", self.name, self.version, reason)

    def _checked_paths(
        self, rows: Columns, expected: Scores
    ) -> tuple[ScoringPath | None, ScoringPath | None, list[str]]:
        split = fastpath.final_step(self.model)
        if split is None:
            return None, None, ["a fast path: the model is not a scikit-learn Pipeline"]
        _, estimator = split
        refused: list[str] = []
        transforms = [
            found
            for found in (
                fastpath.text_transform(self.model),
                fastpath.tabular_transform(self.model),
                fastpath.pipeline_transform(self.model, self._data),
            )
            if found is not None
        ]
        native = fastpath.native_estimate(estimator, self.has_probabilities)
        compiled = fastpath.linear_estimate(estimator) if self.has_probabilities else None
        if compiled is None:
            treelite = fastpath.treelite_estimate(
                estimator, self.has_probabilities, self.classification
            )
            if isinstance(treelite, str):
                refused.append(treelite)
            else:
                compiled = treelite

        def works(path: ScoringPath) -> bool:
            try:
                found = self._scores(path.estimate.call(path.transform.call(rows)))
            except Exception as error:  # a path that cannot score these rows is not used
                refused.append(f"{path.name}: {type(error).__name__}: {error}"[:300])
                return False
            if not _same(found, expected):
                refused.append(f"{path.name}: answers differ from the pipeline's")
                return False
            return True

        large = next((p for t in transforms if works(p := ScoringPath(t, native))), None)
        small = large
        if compiled is not None and large is not None:
            candidate = ScoringPath(large.transform, compiled)
            small = candidate if works(candidate) else large
        return small, large, refused

    def info(self) -> dict[str, Any]:
        card = self.card
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "source": self.source,
            "task": card.task,
            "estimator": card.estimator,
            "git_sha": card.git.sha,
            "run_id": card.run_id,
            "trained_at": card.trained_at,
            "metrics": card.metrics,
            "classes": list(self.classes),
            "scoring_path": self.scoring_path,
            "not_used": list(self._fallbacks),
            "features": {
                "text": list(self.features.text),
                "categorical": list(self.features.categorical),
                "numeric": list(self.features.numeric),
                "optional": list(self.features.optional),
            },
        }


def _finite(numbers: np.ndarray) -> np.ndarray:
    """Numbers a JSON answer can carry; a model answering NaN or infinity refuses the input."""
    if not np.isfinite(numbers).all():
        raise ValueError("the model answered a non-finite number")
    return numbers


def _same(first: Scores, second: Scores) -> bool:
    """The same answers: labels equal, numbers within fastpath.TOLERANCE."""
    pairs = (
        (first.probabilities, second.probabilities),
        (first.values, second.values),
        (first.labels, second.labels),
    )
    for a, b in pairs:
        if a is None or b is None:
            if a is not b:
                return False
        elif a.dtype.kind in "fc":
            if not np.allclose(a, b, rtol=0, atol=fastpath.TOLERANCE):
                return False
        elif not np.array_equal(a, b):
            return False
    return True


def load_directory(
    model_dir: Path,
    name: str | None = None,
    metrics_file: Path | None = None,
    trust: TrustPolicy | None = None,
) -> ServedModel:
    """The model in `model_dir`, served under `name` (default: the name its card records),
    with its evaluation: the one the image build baked in beside it, else `metrics_file`.
    Its files are checked against the signature beside them (model.sig) under `trust`
    before the model is read."""
    check_directory(model_dir, trust or TrustPolicy())
    card = ModelCard.load(model_dir)
    model = artifacts.load_model(model_dir, card)
    baked = model_dir / METRICS_FILE
    for found in (baked, metrics_file):
        if found is not None and found.is_file():
            card = card.updated(metrics=files.read_json(found))
            break
    profile = None
    if (model_dir / PROFILE_FILE).is_file():
        try:
            profile = Profile.load(model_dir / PROFILE_FILE)
        except InputError as error:  # the model still serves; only drift goes unwatched
            log.warning("%s; serving without drift monitoring", error)
    return ServedModel(
        model, card, name or card.served_name, card.version, None, str(model_dir), profile
    )


def load_registry(
    tracking_uri: str, uri: str, allow_code: bool, trust: TrustPolicy | None = None
) -> ServedModel:
    """The version a models:/ URI points at, loaded safely (see registry.load_version)."""
    name, alias, _ = parse_models_uri(uri)
    version = resolve_version(tracking_uri, uri)
    loaded = load_version(tracking_uri, name, version, allow_code, trust)
    card = loaded.card.updated(
        metrics=loaded.metrics,
        mlflow=(loaded.card.mlflow or MlflowInfo(run_id=loaded.run_id)).model_copy(
            update={"run_id": loaded.run_id}
        ),
    )
    return ServedModel(loaded.model, card, name, version, alias, uri, loaded.profile)

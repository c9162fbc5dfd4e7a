"""The model directory: the fitted pipeline in skops format and its model card.

skops refuses to load any type it does not know to be safe unless it is named. We name a
short, reviewed list (the types our three estimators need); anything else is refused, so
a tampered file cannot make the loader run arbitrary code.
"""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import skops.io as sio
from sklearn.pipeline import Pipeline

from mlship.card import MODEL_FILE, ModelCard
from mlship.errors import InputError
from mlship.files import write_with

TRUSTED_TYPES = (
    "numpy.dtype",  # the one-hot encoder's category dtypes
    "sklearn.calibration._CalibratedClassifier",  # linear_svm's calibrated folds
    "sklearn.calibration._SigmoidCalibration",
    # gradient_boosting's trees: skops notes their node indices are not bounds-checked, so
    # a forged file could crash predict(). Model files come only from this pipeline and
    # are content-addressed by DVC and MLflow.
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
TRACKED_LIBRARIES = ("mlship", "scikit-learn", "numpy", "scipy", "pandas", "skops", "mlflow")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def save_model(pipeline: Pipeline, card: ModelCard, model_dir: Path) -> None:
    write_with(
        model_dir / MODEL_FILE,
        lambda temp: sio.dump(pipeline, temp, compression=zipfile.ZIP_DEFLATED),
    )
    card.save(model_dir)


def load_model(model_dir: Path) -> Pipeline:
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise InputError(f"{path}: no model file; run `mlship train` first")
    try:
        found = sio.get_untrusted_types(file=path)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(f"{path}: not a readable skops file: {error}") from error
    refused = [name for name in found if name not in TRUSTED_TYPES]
    if refused:
        raise InputError(f"{path}: refusing to load types outside the trust policy: {refused}")
    try:
        model = sio.load(path, trusted=found)
    except Exception as error:  # skops raises many kinds on a damaged file
        raise InputError(f"{path}: cannot load the model: {error}") from error
    if not isinstance(model, Pipeline):
        raise InputError(f"{path}: expected a scikit-learn Pipeline, got {type(model).__name__}")
    return model

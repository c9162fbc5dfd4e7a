"""MLflow tracking: one run per training, resumed by evaluate; the gate's record on it.
MLflow is imported lazily: it takes seconds to import and most commands never need it."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlship.card import CARD_FILE, PROFILE_FILE, ModelCard
from mlship.config.params import flatten
from mlship.config.settings import Settings
from mlship.errors import InputError, ServiceError, looks_unreachable
from mlship.pipeline.artifacts import TRUSTED_TYPES

log = logging.getLogger("mlship.registry")

if TYPE_CHECKING:
    import pandas as pd

LOCAL_ARTIFACTS = Path("mlruns/artifacts")
MODEL_ARTIFACT = "model"
PYFUNC_REQUIREMENTS = ("scikit-learn", "skops", "pandas", "numpy", "scipy")


def mlflow_failure(error: Exception, what: str) -> InputError | ServiceError:
    """An MLflow error as ours: an unreachable tracking server is a service failure (exit
    3); anything else is bad input (exit 2)."""
    message = getattr(error, "message", None) or str(error)
    if looks_unreachable(error):
        return ServiceError(f"{what}: MLflow did not answer: {message}")
    return InputError(f"{what}: {message}")


def start_tracking(settings: Settings) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = settings.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # the embedded default: a relative sqlite file; its folder must exist
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.get_experiment_by_name(settings.experiment)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = LOCAL_ARTIFACTS.resolve().as_uri() if uri.startswith("sqlite:") else None
        return str(mlflow.create_experiment(settings.experiment, artifact_location=location))
    except MlflowException as error:
        raise mlflow_failure(error, f"MLflow tracking store {uri!r}") from error


def tracking_client(settings: Settings) -> Any:
    """An MlflowClient on the configured store (created and selected first)."""
    import mlflow

    start_tracking(settings)
    return mlflow.MlflowClient()


def _pip_requirements(card: ModelCard) -> list[str]:
    from importlib import metadata

    pinned = {name: metadata.version(name) for name in PYFUNC_REQUIREMENTS}
    return [f"{name}=={version}" for name, version in sorted((pinned | card.requirements).items())]


@dataclass(frozen=True)
class LoggedRun:
    experiment_id: str
    run_id: str
    model_uri: str


def log_training(
    settings: Settings,
    card: ModelCard,
    model: Any,
    example: pd.DataFrame,
    profile: dict[str, Any],
    model_file: Path,
) -> LoggedRun:
    """Log params, the model card, the training data's profile and the model (signature +
    input example), whose file is then `model_file` itself: MLflow writes its own copy, and
    a model signed over the pipeline's file must find the same bytes in the registry."""
    import mlflow
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException
    from mlflow.models import infer_signature

    experiment_id = start_tracking(settings)
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.set_tags({"mlship.stage": "train", "mlship.git_sha": card.git.sha})
            mlflow.log_params(flatten(card.params))
            mlflow.log_dict(card.as_json(), CARD_FILE)
            mlflow.log_dict(profile, PROFILE_FILE)
            signature = infer_signature(example, model.predict(example))
            logged = mlflow.sklearn.log_model(
                model,
                name=MODEL_ARTIFACT,
                signature=signature,
                input_example=example,
                pip_requirements=_pip_requirements(card),
                skops_trusted_types=[*TRUSTED_TYPES, *card.trusted_types],
                code_paths=[str(Path.cwd() / package) for package in card.code] or None,
            )
            mlflow.MlflowClient().log_model_artifact(logged.model_id, str(model_file))
    except MlflowException as error:
        raise mlflow_failure(
            error, f"MLflow at {settings.tracking_uri!r}: logging the run"
        ) from error
    return LoggedRun(experiment_id, str(run.info.run_id), str(logged.model_uri))


def log_evaluation(
    settings: Settings, run_id: str, metrics: dict[str, float], artifacts: list[Path]
) -> None:
    """Add evaluation metrics and report files to the training run."""
    import mlflow
    from mlflow.exceptions import MlflowException

    start_tracking(settings)
    try:
        with mlflow.start_run(run_id=run_id):
            mlflow.set_tag("mlship.evaluated", "true")
            mlflow.log_metrics(metrics)
            for path in artifacts:
                mlflow.log_artifact(str(path), artifact_path="evaluation")
    except MlflowException as error:
        raise mlflow_failure(
            error, f"MLflow run {run_id} (from the model card) at {settings.tracking_uri!r}"
        ) from error


def log_artifacts(settings: Settings, run_id: str, paths: list[Path], folder: str) -> None:
    """Attach report files to a run, under `folder`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    start_tracking(settings)
    try:
        with mlflow.start_run(run_id=run_id):
            for path in paths:
                mlflow.log_artifact(str(path), artifact_path=folder)
    except MlflowException as error:
        raise mlflow_failure(error, f"MLflow run {run_id}: attaching {folder} files") from error


# Every verdict of the gate is kept: its reports go under gate/<sha256 of gate.json>/ and a
# tag named by that digest says passed or failed, so a later gate run on the same run adds a
# record and never replaces one a registered version points at.
GATE_VERDICT_TAG = "mlship.gate.verdict."
GATE_LATEST_TAG = "mlship.gate.latest"
GATE_DIGEST_TAG = "mlship.gate_sha256"  # on a registered version: the verdict it passed
GATE_FOLDER = "gate"
GATE_REPORT = "gate.json"
PASSED, FAILED = "passed", "failed"


def gate_folder(digest: str) -> str:
    return f"{GATE_FOLDER}/{digest}"


def record_gate(
    settings: Settings, run_id: str, report: Path, others: list[Path], passed: bool
) -> str:
    """Add the gate's verdict to the run: `report` (gate.json) and the other report files
    under gate/<digest>/, and the verdict under a tag named by the digest. Returns it."""
    import shutil
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    digest = hashlib.sha256(report.read_bytes()).hexdigest()
    start_tracking(settings)
    try:
        with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as folder:
            stored = Path(folder) / GATE_REPORT  # under its own name, whatever the file's
            shutil.copyfile(report, stored)
            for path in [stored, *others]:
                mlflow.log_artifact(str(path), artifact_path=gate_folder(digest))
        client = mlflow.MlflowClient()
        client.set_tag(run_id, GATE_VERDICT_TAG + digest, PASSED if passed else FAILED)
        client.set_tag(run_id, GATE_LATEST_TAG, digest)
    except MlflowException as error:
        raise mlflow_failure(error, f"MLflow run {run_id}: recording the gate") from error
    return digest


def passing_gate_report(tracking_uri: str, run_id: str, digest: str) -> dict[str, Any] | None:
    """The gate report recorded on the run under `digest`, when it is a pass of that run:
    the verdict tag, the stored bytes' digest and the report's own content must all agree."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        tags = mlflow.MlflowClient(tracking_uri).get_run(run_id).data.tags
        if tags.get(GATE_VERDICT_TAG + digest) != PASSED:
            return None
        with tempfile.TemporaryDirectory() as folder:
            stored = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run_id,
                    artifact_path=f"{gate_folder(digest)}/{GATE_REPORT}",
                    dst_path=folder,
                    tracking_uri=tracking_uri,
                )
            ).read_bytes()
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise mlflow_failure(error, f"MLflow run {run_id}: the gate record") from error
    except OSError:  # a file store answers a missing artifact this way
        return None
    if hashlib.sha256(stored).hexdigest() != digest:
        return None
    try:
        report = json.loads(stored)
    except ValueError:
        return None
    passed = (
        isinstance(report, dict)
        and report.get("passed") is True
        and report.get("candidate_run_id") == run_id
        and all(c.get("passed") is True for c in report.get("criteria", []))
    )
    return report if passed else None


TEST_SPLIT_FOLDER = "test-split"  # the splits a run was gated on, by content digest


def keep_test_split(settings: Settings, run_id: str, split: Path, digest: str) -> None:
    """Keep the test split the gate judged the run on, as `test-split/<digest>.parquet`: a
    later candidate whose test set differs is judged on this one as well."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        named = Path(folder) / f"{digest}.parquet"
        shutil.copyfile(split, named)
        log_artifacts(settings, run_id, [named], TEST_SPLIT_FOLDER)


def kept_test_split(tracking_uri: str, run_id: str, digest: str, folder: Path) -> Path | None:
    """The test split `run_id` was gated on (downloaded into `folder`), or None when the run
    kept none under that digest (gated before splits were kept)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=f"{TEST_SPLIT_FOLDER}/{digest}.parquet",
            dst_path=str(folder),
            tracking_uri=tracking_uri,
        )
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise mlflow_failure(error, f"MLflow run {run_id}: its test split") from error
    except OSError:  # a file store answers a missing artifact this way
        return None
    return Path(found)


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where a person finds the run: the server's page, or how to open the local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"run {run_id} in {tracking_uri} (browse: mlflow ui --backend-store-uri {tracking_uri})"


# --- the model registry: aliases `candidate` and `champion`, never the deprecated stages --

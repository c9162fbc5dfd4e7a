"""MLflow: one run per training, resumed by evaluate. MLflow is imported lazily because
it takes seconds to import and most commands never need it.
"""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlship.artifacts import TRUSTED_TYPES
from mlship.card import CARD_FILE, PROFILE_FILE, ModelCard
from mlship.config import Settings, flatten
from mlship.drift import Profile
from mlship.errors import InputError, ServiceError, looks_unreachable

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
    settings: Settings, card: ModelCard, model: Any, example: pd.DataFrame,
    profile: dict[str, Any],
) -> LoggedRun:  # fmt: skip
    """Log params, the model card, the training data's profile and the model (signature +
    input example)."""
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


GATE_PASSED_TAG = "mlship.gate.passed"
GATE_DIGEST_TAG = "mlship.gate.sha256"
GATE_ARTIFACT = "gate/gate.json"


def record_gate(settings: Settings, run_id: str, digest: str, passed: bool) -> None:
    """What the gate decided about this run, and the sha256 of the report that says so."""
    from mlflow.exceptions import MlflowException

    client = _client(settings)
    try:
        client.set_tag(run_id, GATE_PASSED_TAG, "true" if passed else "false")
        client.set_tag(run_id, GATE_DIGEST_TAG, digest)
    except MlflowException as error:
        raise mlflow_failure(error, f"MLflow run {run_id}: recording the gate") from error


def run_tags(settings: Settings, run_id: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(_client(settings).get_run(run_id).data.tags)
    except MlflowException as error:
        raise mlflow_failure(error, f"MLflow run {run_id}") from error


def run_artifact(settings: Settings, run_id: str, path: str) -> bytes | None:
    """The bytes of one artifact of a run, or None when the run has none there."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    start_tracking(settings)
    try:
        with tempfile.TemporaryDirectory() as folder:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, dst_path=folder,
                tracking_uri=settings.tracking_uri,
            )  # fmt: skip
            return Path(local).read_bytes()
    except (MlflowException, OSError):
        return None


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where a person finds the run: the server's page, or how to open the local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"run {run_id} in {tracking_uri} (browse: mlflow ui --backend-store-uri {tracking_uri})"


# --- the model registry: aliases `candidate` and `champion`, never the deprecated stages --

CANDIDATE = "candidate"
CHAMPION = "champion"


def _client(settings: Settings) -> Any:
    import mlflow

    start_tracking(settings)
    return mlflow.MlflowClient()


def _set_tags(client: Any, settings: Settings, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(settings.registered_name, version, key, value)


def alias_version(settings: Settings, alias: str) -> Any | None:
    """The model version holding `alias`, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return _client(settings).get_model_version_by_alias(settings.registered_name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise mlflow_failure(error, "MLflow registry lookup") from error


@dataclass(frozen=True)
class LoadedVersion:
    model: Any
    card: ModelCard
    run_id: str
    metrics: dict[str, float]
    profile: Profile | None  # None for versions trained before profiles were kept


def _skops_file(folder: Path, uri: str) -> Path:
    """The model file of a downloaded version; InputError unless it is a skops file."""
    import yaml

    try:
        flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["sklearn"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as error:
        raise InputError(f"{uri}: no scikit-learn flavor in its MLmodel file: {error}") from error
    if flavor.get("serialization_format") != "skops":
        raise InputError(
            f"{uri}: refusing a model saved as {flavor.get('serialization_format')!r}; only "
            "skops files are loaded (a pickle can run any code when loaded)"
        )
    return folder / str(flavor.get("pickled_model", "model.skops"))


def load_version(tracking_uri: str, name: str, version: str) -> LoadedVersion:
    """A registered version, loaded only as a skops file under the trust policy (the built-in
    list plus the types its card names), never by unpickling; its card and run metrics."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    from mlship.artifacts import CODE_DIR, load_file

    uri = f"models:/{name}/{version}"
    mlflow.set_tracking_uri(tracking_uri)  # runs:/ artifact URIs resolve through it
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        found = client.get_model_version(name, version)
        run_id = str(found.run_id)
        raw_card = mlflow.artifacts.load_dict(f"runs:/{run_id}/{CARD_FILE}")
        metrics = dict(client.get_run(run_id).data.metrics)
        folder = Path(
            mlflow.artifacts.download_artifacts(
                uri, dst_path=tempfile.mkdtemp(prefix="mlship-model-"), tracking_uri=tracking_uri
            )
        )
    except MlflowException as error:
        raise mlflow_failure(error, uri) from error
    card = ModelCard.parse(raw_card, f"{uri}: {CARD_FILE}")
    code = folder / CODE_DIR
    try:
        model_file = _skops_file(folder, uri)
        if code.is_dir() and str(code) not in sys.path:
            sys.path.insert(0, str(code))
        model = load_file(model_file, TRUSTED_TYPES + card.trusted_types)
    finally:
        if not code.is_dir():  # the team's code stays: it is on sys.path, imported lazily
            shutil.rmtree(folder, ignore_errors=True)
    return LoadedVersion(model, card, run_id, metrics, _run_profile(run_id, uri))


def version_profile(tracking_uri: str, uri: str) -> Profile:
    """The training-data profile of the version a models:/ URI points at."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlship.serving.model import parse_models_uri, resolve_version

    name = parse_models_uri(uri)[0]
    version = resolve_version(tracking_uri, uri)
    try:
        run_id = str(mlflow.MlflowClient(tracking_uri).get_model_version(name, version).run_id)
    except MlflowException as error:
        raise mlflow_failure(error, uri) from error
    mlflow.set_tracking_uri(tracking_uri)
    found = _run_profile(run_id, uri)
    if found is None:
        raise InputError(f"{uri} (version {version}): its run kept no {PROFILE_FILE}; "
                         "retrain it, or give a data file as the reference")  # fmt: skip
    return found


def _run_profile(run_id: str, uri: str) -> Profile | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        raw = mlflow.artifacts.load_dict(f"runs:/{run_id}/{PROFILE_FILE}")
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise mlflow_failure(error, f"{uri}: {PROFILE_FILE}") from error
    except OSError:  # a file store answers a missing artifact this way
        return None
    try:
        return Profile.parse(raw, f"{uri}: {PROFILE_FILE}")
    except InputError as error:  # the model still serves; only drift goes unwatched
        log.warning("%s; serving without drift monitoring", error)
        return None


def load_version_model(settings: Settings, version: str) -> Any:
    start_tracking(settings)
    return load_version(settings.tracking_uri, settings.registered_name, version).model


def register(settings: Settings, run_id: str, model_uri: str, tags: dict[str, str]) -> str:
    """Register the run's model (once per run), tag it and give it alias `candidate`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = _client(settings)
    try:
        version = registered_version(settings, run_id)
        if version is None:
            version = str(mlflow.register_model(model_uri, settings.registered_name).version)
        _set_tags(client, settings, version, tags)
        client.set_registered_model_alias(settings.registered_name, CANDIDATE, version)
    except MlflowException as error:
        raise mlflow_failure(error, "MLflow registry") from error
    return version


def registered_version(settings: Settings, run_id: str) -> str | None:
    """The model version registered from `run_id`, or None if it was never registered."""
    from mlflow.exceptions import MlflowException

    try:
        found = _client(settings).search_model_versions(
            f"name = '{settings.registered_name}' and run_id = '{run_id}'"
        )
    except MlflowException as error:
        raise mlflow_failure(error, "MLflow registry lookup") from error
    return str(max(int(v.version) for v in found)) if found else None


def version_run_id(settings: Settings, version: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        found = _client(settings).get_model_version(settings.registered_name, version)
    except MlflowException as error:
        raise mlflow_failure(
            error, f"model {settings.registered_name!r} version {version}"
        ) from error
    return str(found.run_id)


def version_tags(settings: Settings, version: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        found = _client(settings).get_model_version(settings.registered_name, version)
    except MlflowException as error:
        raise mlflow_failure(
            error, f"model {settings.registered_name!r} version {version}"
        ) from error
    return dict(found.tags)


def move_champion(settings: Settings, version: str, tags: dict[str, str]) -> None:
    tag_version(settings, version, tags)
    _client(settings).set_registered_model_alias(settings.registered_name, CHAMPION, version)


def tag_version(settings: Settings, version: str, tags: dict[str, str]) -> None:
    from mlflow.exceptions import MlflowException

    try:
        _set_tags(_client(settings), settings, version, tags)
    except MlflowException as error:
        raise mlflow_failure(error, f"MLflow registry: tagging version {version}") from error

"""The MLflow model registry: registered versions, their tags and the aliases
`candidate` and `champion`."""

from __future__ import annotations

from typing import Any

from mlship.config.settings import Settings
from mlship.pipeline.signatures import TrustPolicy
from mlship.registry.loading import LoadedVersion, gated_version_report, load_version
from mlship.registry.runs import mlflow_failure, start_tracking, tracking_client

CANDIDATE = "candidate"
CHAMPION = "champion"


def _set_tags(client: Any, settings: Settings, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(settings.registered_name, version, key, value)


def alias_version(settings: Settings, alias: str) -> Any | None:
    """The model version holding `alias`, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return tracking_client(settings).get_model_version_by_alias(settings.registered_name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise mlflow_failure(error, "MLflow registry lookup") from error


def register(settings: Settings, run_id: str, model_uri: str, tags: dict[str, str]) -> str:
    """Register the run's model (once per run), tag it and give it alias `candidate`."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = tracking_client(settings)
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
        found = tracking_client(settings).search_model_versions(
            f"name = '{settings.registered_name}' and run_id = '{run_id}'"
        )
    except MlflowException as error:
        raise mlflow_failure(error, "MLflow registry lookup") from error
    return str(max(int(v.version) for v in found)) if found else None


def version_run_id(settings: Settings, version: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        found = tracking_client(settings).get_model_version(settings.registered_name, version)
    except MlflowException as error:
        raise mlflow_failure(
            error, f"model {settings.registered_name!r} version {version}"
        ) from error
    return str(found.run_id)


def version_tags(settings: Settings, version: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        found = tracking_client(settings).get_model_version(settings.registered_name, version)
    except MlflowException as error:
        raise mlflow_failure(
            error, f"model {settings.registered_name!r} version {version}"
        ) from error
    return dict(found.tags)


def gated_report(settings: Settings, version: str) -> dict[str, Any] | None:
    """The passing gate report the version was registered with, verified on its run."""
    from mlflow.exceptions import MlflowException

    try:
        found = tracking_client(settings).get_model_version(settings.registered_name, version)
    except MlflowException as error:
        raise mlflow_failure(
            error, f"model {settings.registered_name!r} version {version}"
        ) from error
    return gated_version_report(settings.tracking_uri, str(found.run_id), dict(found.tags))


def move_champion(settings: Settings, version: str, tags: dict[str, str]) -> None:
    tag_version(settings, version, tags)
    tracking_client(settings).set_registered_model_alias(
        settings.registered_name, CHAMPION, version
    )


def tag_version(settings: Settings, version: str, tags: dict[str, str]) -> None:
    from mlflow.exceptions import MlflowException

    try:
        _set_tags(tracking_client(settings), settings, version, tags)
    except MlflowException as error:
        raise mlflow_failure(error, f"MLflow registry: tagging version {version}") from error


def load_champion(settings: Settings, version: str) -> LoadedVersion:
    start_tracking(settings)
    trust = TrustPolicy.of(settings)
    return load_version(settings.tracking_uri, settings.registered_name, version, trust=trust)

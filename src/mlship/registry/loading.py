"""Loading a registered version safely: `models:/<name>@<alias>` or `/<version>` resolved,
the model file read only as skops under the trust policy, with its card, metrics and the
training data's profile."""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlship.card import CARD_FILE, PROFILE_FILE, ModelCard
from mlship.errors import InputError
from mlship.monitor.drift import Profile
from mlship.pipeline.artifacts import TRUSTED_TYPES
from mlship.registry.runs import mlflow_failure

log = logging.getLogger("mlship.registry")
MODELS_SCHEME = "models:/"


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """models:/name@alias -> (name, alias, None); models:/name/3 -> (name, None, "3")."""
    rest = uri.removeprefix(MODELS_SCHEME)
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in rest:
        name, version = rest.split("/", 1)
        if name and version.isdigit():
            return name, None, version
    raise InputError(f"{uri}: expected models:/<name>@<alias> or models:/<name>/<version>")


def resolve_version(tracking_uri: str, uri: str) -> str:
    """The registry version a models:/ URI points at now."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_models_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        if alias is not None:
            return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        raise mlflow_failure(error, uri) from error
    assert version is not None
    return version


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

    from mlship.pipeline.artifacts import CODE_DIR, load_file

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

    name = parse_models_uri(uri)[0]
    version = resolve_version(tracking_uri, uri)
    try:
        run_id = str(mlflow.MlflowClient(tracking_uri).get_model_version(name, version).run_id)
    except MlflowException as error:
        raise mlflow_failure(error, uri) from error
    mlflow.set_tracking_uri(tracking_uri)
    found = _run_profile(run_id, uri)
    if found is None:
        raise InputError(
            f"{uri} (version {version}): its run kept no {PROFILE_FILE}; "
            "retrain it, or give a data file as the reference"
        )
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

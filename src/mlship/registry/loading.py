"""Loading a registered version safely: `models:/<name>@<alias>` or `/<version>` resolved,
the model file read only as skops under the trust policy, with its card, metrics and the
training data's profile."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlship import files
from mlship.card import CARD_FILE, MODEL_FILE, PROFILE_FILE, ModelCard
from mlship.errors import InputError
from mlship.monitor.drift import Profile
from mlship.pipeline.artifacts import CODE_DIR, TRUSTED_TYPES, code_on_path
from mlship.pipeline.signatures import (
    PROVENANCE_FILE,
    SIGNATURE_FILE,
    TrustPolicy,
    registry_files,
)
from mlship.registry import runs
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
    """The model file of a downloaded version; InputError unless it is a skops file inside
    the version's own folder."""
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
    named = str(flavor.get("pickled_model", "model.skops"))
    found = (folder / named).resolve()
    if not found.is_relative_to(folder.resolve()) or not found.is_file():
        raise InputError(
            f"{uri}: its MLmodel names the model file {named!r}, which is not a file inside "
            "the version's own artifacts; refusing to load it"
        )
    return found


def gated_version_report(
    tracking_uri: str, run_id: str, version_tags: dict[str, str]
) -> dict[str, Any] | None:
    """The passing gate report a version was registered with, verified on its run."""
    digest = version_tags.get(runs.GATE_DIGEST_TAG)
    return runs.passing_gate_report(tracking_uri, run_id, digest) if digest else None


def _check_code(
    folder: Path, card: ModelCard, gated: dict[str, Any] | None, allow_code: bool, uri: str
) -> None:
    """A version that ships the team's code, or trusts types beyond the built-in list, loads
    only where code is allowed, and only as the gate judged it: the same types, the same
    code, byte for byte. Anything else is refused before a line of it is imported."""
    code = folder / CODE_DIR
    if not card.trusted_types and not code.exists():
        return
    shipped = (
        f"the team's code ({', '.join(card.code) or CODE_DIR + '/'})"
        if code.exists()
        else (f"types beyond the built-in trust list ({', '.join(card.trusted_types)})")
    )
    if not allow_code:
        raise InputError(
            f"{uri}: the version carries {shipped}; this server imports a version's code only "
            "when the deployment opts in: set MLSHIP_TRUST_MODEL_CODE=true"
        )
    if gated is None:
        raise InputError(
            f"{uri}: the version carries {shipped} but no passing gate record; refusing to "
            "import code no gate has judged"
        )
    digest = files.tree_sha256(code) if code.exists() else None
    if digest != gated.get("code_sha256"):
        raise InputError(
            f"{uri}: its code (sha256 {digest}) is not the code the gate judged "
            f"(sha256 {gated.get('code_sha256')}); refusing to import it"
        )
    if sorted(card.trusted_types) != sorted(gated.get("trusted_types", [])):
        raise InputError(
            f"{uri}: its card trusts {sorted(card.trusted_types)}, but the gate judged "
            f"{sorted(gated.get('trusted_types', []))}; refusing to load it"
        )


SIGNATURE_FOLDER = "signature"  # on the run: the model's signature and provenance


def load_version(
    tracking_uri: str,
    name: str,
    version: str,
    allow_code: bool = True,
    trust: TrustPolicy | None = None,
    keep: Path | None = None,
) -> LoadedVersion:
    """A registered version, loaded only as a skops file under the trust policy (the built-in
    list plus the types its card names), never by unpickling; its card and run metrics.
    Before anything is deserialised, its files are checked against its signature under the
    signature policy `trust` (signatures.py). A version with the team's code loads only
    with `allow_code` and a passing gate record of that very code (see _check_code). With
    `keep`, the version's own files (not a re-saved copy) and its signature are copied there
    as a model directory."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    from mlship.pipeline.artifacts import load_file

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
        raw_profile = _run_json(run_id, PROFILE_FILE)
        signature = _run_bytes(run_id, f"{SIGNATURE_FOLDER}/{SIGNATURE_FILE}")
        provenance = _run_bytes(run_id, f"{SIGNATURE_FOLDER}/{PROVENANCE_FILE}")
        (trust or TrustPolicy()).check(
            registry_files(model_file, raw_card, raw_profile, uri), signature, provenance
        )
        if keep is not None:
            _keep(keep, model_file, code, raw_card, raw_profile, signature, provenance)
        if card.trusted_types or code.exists():
            gated = gated_version_report(tracking_uri, run_id, dict(found.tags))
            _check_code(folder, card, gated, allow_code, uri)
        if code.is_dir():
            code_on_path(code)  # it stays there: the code is imported lazily
        model = load_file(model_file, TRUSTED_TYPES + card.trusted_types)
    except BaseException:
        if str(code.resolve()) in sys.path:
            sys.path.remove(str(code.resolve()))
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if not code.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    return LoadedVersion(model, card, run_id, metrics, _run_profile(run_id, uri))


def _run_bytes(run_id: str, path: str) -> bytes | None:
    """A file of the run's artifacts, or None when it has none there."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="mlship-run-file-") as folder:
        try:
            found = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, dst_path=folder
            )
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise mlflow_failure(error, f"run {run_id}: {path}") from error
        except OSError:  # a file store answers a missing artifact this way
            return None
        return Path(found).read_bytes()


def _run_json(run_id: str, path: str) -> Any:
    found = _run_bytes(run_id, path)
    return None if found is None else json.loads(found)


def _keep(
    folder: Path,
    model_file: Path,
    code: Path,
    card: dict[str, Any],
    profile: Any,
    signature: bytes | None,
    provenance: bytes | None,
) -> None:
    """The version as a model directory: its files as the registry holds them."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_file, folder / MODEL_FILE)
    if code.is_dir():
        shutil.copytree(code, folder / CODE_DIR, ignore=shutil.ignore_patterns("__pycache__"))
    files.write_json(folder / CARD_FILE, card)
    if profile is not None:
        files.write_json(folder / PROFILE_FILE, profile)
    for name, content in ((SIGNATURE_FILE, signature), (PROVENANCE_FILE, provenance)):
        if content is not None:
            (folder / name).write_bytes(content)


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

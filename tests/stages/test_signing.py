"""Signing at registration and the check at each hop of the pipeline: `mlship register` signs
the gated model and its provenance with the CI's key; the registry loader, the image
build's staging from the registry, the server's start and `mlship verify` accept it, and
refuse a forged model file in the registry (the attack as found: a model whose TF-IDF
vocabulary was shuffled, still self-consistent, put where the signed one was)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from mlship.card import ModelCard
from mlship.cli import app
from mlship.errors import InputError
from mlship.pipeline import signatures
from mlship.pipeline.artifacts import load_model, save_model
from mlship.registry import loading
from mlship.serving.model import load_directory
from mlship.stages.gate import gate
from mlship.stages.release import register
from mlship.stages.ship import stage_registry_uri
from tests.conftest import Project
from tests.keys import key_pair


@pytest.fixture
def signed(project: Project, tmp_path: Path) -> Project:
    """A gated model registered with a signing key; the project trusts that key and
    requires signatures."""
    _, public = key_pair(tmp_path, "ci")
    project.settings = project.settings.model_copy(
        update={
            "signing_key": SecretStr(str(tmp_path / "ci.pem")),
            "trusted_keys": str(public),
            "signatures": "required",
        }
    )
    project.run_pipeline(project.params())
    assert gate(project.stage_inputs(project.params()), stale=lambda _: []).passed
    return project


def _version_uri(project: Project, version: str) -> str:
    return f"models:/{project.settings.registered_name}/{version}"


def test_register_signs_the_model_and_its_provenance(signed: Project) -> None:
    done = register(signed.stage_inputs())
    paths = signed.paths
    assert done.signed is not None and paths.signature.is_file() and paths.provenance.is_file()
    tags = (
        mlflow.MlflowClient(signed.settings.tracking_uri)
        .get_model_version(signed.settings.registered_name, done.version)
        .tags
    )
    assert tags["mlship.signed_model_sha256"] == done.signed
    trust = signatures.TrustPolicy.of(signed.settings)
    verified = signatures.check_directory(paths.model_dir, trust, paths.signature, paths.provenance)
    assert verified is not None and verified.root == done.signed
    built = verified.provenance["buildDefinition"]  # type: ignore[index]
    assert built["internalParameters"]["gate"]["verdict"] == "passed"
    assert built["externalParameters"]["git"]["sha"] == ModelCard.load(paths.model_dir).git.sha
    # every hop accepts it: the registry loader, the image build's staging, `mlship verify`
    uri = _version_uri(signed, done.version)
    name = signed.settings.registered_name
    loading.load_version(signed.settings.tracking_uri, name, done.version, trust=trust)
    staged = stage_registry_uri(signed.settings, uri, signed.root / "staged")
    assert signatures.check_directory(signed.root / "staged", trust).root == done.signed  # type: ignore[union-attr]
    assert staged.registry is not None and staged.registry.version == done.version
    served = load_directory(signed.root / "staged", trust=trust)
    assert served.version == done.version


def test_without_a_key_a_required_policy_refuses_to_register(signed: Project) -> None:
    signed.settings = signed.settings.model_copy(update={"signing_key": None})
    with pytest.raises(InputError, match="no MLSHIP_SIGNING_KEY"):
        register(signed.stage_inputs())


def test_a_forged_model_file_in_the_registry_is_refused_at_every_hop(
    signed: Project, tmp_path: Path
) -> None:
    done = register(signed.stage_inputs())
    settings = signed.settings
    # the attacker with write access to the registry puts a model whose vocabulary is
    # shuffled in the signed one's place (the run's model artifact)
    genuine = load_model(signed.paths.model_dir, ModelCard.load(signed.paths.model_dir))
    vectorizer = genuine.named_steps["features"].transformers_[0][1]
    terms = list(vectorizer.vocabulary_)
    order = np.random.default_rng(0).permutation(len(terms))
    vectorizer.vocabulary_ = {term: int(order[i]) for i, term in enumerate(terms)}
    forged = tmp_path / "forged"
    save_model(genuine, ModelCard.load(signed.paths.model_dir), forged)
    model_uri = ModelCard.load(signed.paths.model_dir).mlflow.model_uri  # type: ignore[union-attr]
    model_id = str(model_uri).removeprefix("models:/")
    client = mlflow.MlflowClient(settings.tracking_uri)
    client.log_model_artifact(model_id, str(forged / "model.skops"))
    trust = signatures.TrustPolicy.of(settings)
    uri = _version_uri(signed, done.version)
    refused = r"model\.skops differs from the signed model"
    # the registry loader, before anything is deserialised
    with pytest.raises(InputError, match=refused):
        loading.load_version(
            settings.tracking_uri, settings.registered_name, done.version, trust=trust
        )
    # the image build from the registry (it stages the version the same way)
    with pytest.raises(InputError, match=refused):
        stage_registry_uri(settings, uri, tmp_path / "staged")
    # the server's start, on a directory holding the forged file beside the signature
    served = tmp_path / "served"
    shutil.copytree(signed.paths.model_dir, served)
    shutil.copy(signed.paths.signature, served / "model.sig")
    shutil.copy(signed.paths.provenance, served / "provenance.json")
    shutil.copy(forged / "model.skops", served / "model.skops")
    with pytest.raises(InputError, match=refused):
        load_directory(served, trust=trust)
    # and `mlship verify` says so, exit 2
    runner = CliRunner()
    env = {
        "MLSHIP_TRACKING_URI": settings.tracking_uri,
        "MLSHIP_TRUSTED_KEYS": str(settings.trusted_keys),
        "MLSHIP_SIGNATURES": "required",
        "MLSHIP_MODEL_NAME": settings.registered_name,
    }
    result = runner.invoke(app, ["verify", uri], env=env)
    assert result.exit_code == 2 and "model.skops differs" in result.stderr, result.output
    genuine_dir = runner.invoke(app, ["verify", str(signed.paths.model_dir)], env=env)
    assert genuine_dir.exit_code == 0, genuine_dir.output
    assert "files match the signature" in genuine_dir.stderr
    assert "provenance: gate passed" in genuine_dir.stderr
    json.loads(signed.paths.gate_json.read_text())  # the reports stay readable

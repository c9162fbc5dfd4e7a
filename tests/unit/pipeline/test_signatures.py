"""Signed models: mlship's signatures are the OpenSSF model-signing format (the reference
implementation verifies them, and mlship verifies its), and every forgery is refused by
name: a byte flipped in the model, a file added or removed, a card edited, a valid
signature by an untrusted key, a provenance of a failed gate or of another model, an
unsigned model where the policy requires a signature."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlship.card import ModelCard
from mlship.errors import InputError
from mlship.pipeline import signatures
from mlship.pipeline.artifacts import save_model
from mlship.pipeline.train import fit
from tests.conftest import make_params, text_frame
from tests.keys import key_pair
from tests.serving.conftest import card_for


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    card = card_for(["great", "other"]).updated(code=())
    save_model(fit(make_params(), text_frame(20)), card, folder)
    (folder / "code" / "team").mkdir(parents=True)
    (folder / "code" / "team" / "features.py").write_text("def clean(text):\n    return text\n")
    (folder / "profile.json").write_text('{"columns": {}}')
    return folder


def _signed(model: Path, key: Any, verdict: str = "passed") -> None:
    files = signatures.directory_files(model)
    statement = signatures.model_statement(files.digests())
    root = statement["subject"][0]["digest"]["sha256"]
    gate = {"verdict": verdict, "report_sha256": "0" * 64}
    predicate = {"buildDefinition": {"internalParameters": {"gate": gate}}}
    (model / signatures.SIGNATURE_FILE).write_bytes(signatures.sign_statement(statement, key))
    provenance = signatures.provenance_statement(root, predicate)
    (model / signatures.PROVENANCE_FILE).write_bytes(signatures.sign_statement(provenance, key))


def _policy(public: Path, mode: signatures.Policy = "required") -> signatures.TrustPolicy:
    keys = signatures.load_public_keys([(str(public), public.read_bytes())])
    return signatures.TrustPolicy(mode, tuple(keys))


def test_a_signed_model_verifies_and_fields_filled_later_do_not_count(
    model: Path, tmp_path: Path
) -> None:
    key, public = key_pair(tmp_path, "ci")
    _signed(model, key)
    verified = signatures.check_directory(model, _policy(public))
    assert verified is not None and verified.files == 4 and verified.provenance is not None
    # a hop fills in the registry version, the run and the metrics, and bakes the metrics in
    card = ModelCard.load(model)
    card.updated(registry={"name": "reviews", "version": "3"}, metrics={"accuracy": 0.8}).save(
        model
    )
    (model / "metrics.json").write_text('{"accuracy": 0.8}')
    assert signatures.check_directory(model, _policy(public)) == verified


def _flip_a_byte(model: Path) -> None:
    content = bytearray((model / "model.skops").read_bytes())
    content[len(content) // 2] ^= 0xFF
    (model / "model.skops").write_bytes(bytes(content))


@pytest.mark.parametrize(
    ("forge", "said"),
    [
        (
            _flip_a_byte,
            "model.skops differs from the signed model",
        ),
        (
            lambda m: m.joinpath("code", "team", "extra.py").write_text("import os\n"),
            "code/team/extra.py is not signed (a file was added)",
        ),
        (
            lambda m: m.joinpath("code", "team", "features.py").unlink(),
            "code/team/features.py is signed but missing",
        ),
        (
            lambda m: ModelCard.load(m).updated(trusted_types=("os.system",)).save(m),
            "model_card.json differs from the signed model",
        ),
        (
            lambda m: m.joinpath("profile.json").write_text('{"columns": {"x": 1}}'),
            "profile.json differs from the signed model",
        ),
    ],
    ids=["a byte flipped", "a file added", "a file removed", "the card edited", "the profile"],
)
def test_every_forged_file_is_named(model: Path, tmp_path: Path, forge: Any, said: str) -> None:
    key, public = key_pair(tmp_path, "ci")
    _signed(model, key)
    forge(model)
    with pytest.raises(InputError, match=re.escape(said)):
        signatures.check_directory(model, _policy(public))


def test_a_signature_by_an_untrusted_key_is_refused(model: Path, tmp_path: Path) -> None:
    attacker, _ = key_pair(tmp_path, "attacker")
    _, public = key_pair(tmp_path, "ci")
    _signed(model, attacker)
    with pytest.raises(InputError, match="signed by a key the policy does not trust"):
        signatures.check_directory(model, _policy(public))


def test_a_provenance_of_a_failed_gate_or_of_another_model_is_refused(
    model: Path, tmp_path: Path
) -> None:
    key, public = key_pair(tmp_path, "ci")
    _signed(model, key, verdict="failed")
    with pytest.raises(InputError, match="the gate's verdict on this model was 'failed'"):
        signatures.check_directory(model, _policy(public))
    other = signatures.provenance_statement(
        "1" * 64, {"buildDefinition": {"internalParameters": {"gate": {"verdict": "passed"}}}}
    )
    (model / signatures.PROVENANCE_FILE).write_bytes(signatures.sign_statement(other, key))
    with pytest.raises(InputError, match="the provenance of another model"):
        signatures.check_directory(model, _policy(public))


def test_an_unsigned_model_passes_checked_and_is_refused_where_required(
    model: Path, tmp_path: Path
) -> None:
    _, public = key_pair(tmp_path, "ci")
    assert signatures.check_directory(model, _policy(public, "checked")) is None
    with pytest.raises(InputError, match="not signed, and the policy requires a signature"):
        signatures.check_directory(model, _policy(public, "required"))
    key, _ = key_pair(tmp_path, "other")
    _signed(model, key)  # and a signature no key is set to check cannot pass
    with pytest.raises(InputError, match="no trusted key is set"):
        signatures.check_directory(model, signatures.TrustPolicy("checked"))


def test_a_shuffled_vocabulary_saved_anew_is_refused(model: Path, tmp_path: Path) -> None:
    """The attack as found: the TF-IDF vocabulary shuffled (still self-consistent), saved
    as a model file that loads and serves, under a copy of the genuine signature."""
    import numpy as np

    from mlship.pipeline.artifacts import load_model

    key, public = key_pair(tmp_path, "ci")
    _signed(model, key)
    fitted = load_model(model, ModelCard.load(model))
    vectorizer = fitted.named_steps["features"].transformers_[0][1]
    terms = list(vectorizer.vocabulary_)
    shuffled = np.random.default_rng(0).permutation(len(terms))
    vectorizer.vocabulary_ = {term: int(shuffled[i]) for i, term in enumerate(terms)}
    save_model(fitted, ModelCard.load(model), tmp_path / "resaved")
    shutil.copy(tmp_path / "resaved" / "model.skops", model / "model.skops")
    with pytest.raises(InputError, match=r"model\.skops differs from the signed model"):
        signatures.check_directory(model, _policy(public))


def _staged(model: Path, into: Path) -> Path:
    """The model as the signature covers it (the card and profile in their canonical form),
    for the reference implementation, which hashes files as they are."""
    shutil.copytree(model, into, ignore=shutil.ignore_patterns("model.sig", "provenance.json"))
    card = json.loads((model / "model_card.json").read_text())
    (into / "model_card.json").write_bytes(signatures.canonical_card(card))
    profile = json.loads((model / "profile.json").read_text())
    (into / "profile.json").write_bytes(signatures.canonical_json(profile))
    return into


def test_the_reference_implementation_verifies_mlships_signature_and_mlship_its(
    model: Path, tmp_path: Path
) -> None:
    pytest.importorskip("model_signing")
    key, public = key_pair(tmp_path, "ci")
    _signed(model, key)
    staged = _staged(model, tmp_path / "staged")
    cli = [sys.executable, "-m", "model_signing"]
    ours = subprocess.run(
        [
            *cli,
            "verify",
            "key",
            str(staged),
            "--signature",
            str(model / "model.sig"),
            "--public_key",
            str(public),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ours.returncode == 0 and "Verification succeeded" in ours.stdout, ours.stderr
    theirs = tmp_path / "theirs.sig"
    signed = subprocess.run(
        [
            *cli,
            "sign",
            "key",
            str(staged),
            "--private_key",
            str(tmp_path / "ci.pem"),
            "--signature",
            str(theirs),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert signed.returncode == 0, signed.stderr
    statement = signatures.open_bundle(theirs.read_bytes(), list(_policy(public).keys), "theirs")
    assert signatures.verify_files(signatures.directory_files(model), statement)

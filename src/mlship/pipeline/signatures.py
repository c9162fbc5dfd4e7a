"""Signed models: what a signature covers, how it is made, and the one check every hop runs
(the registry loader, the image build, the deploy, the server's start, `mlship verify`).

The format is the OpenSSF model-signing one (sigstore/model-transparency, `model_signing
verify key` reads it): a Sigstore bundle (v0.3) holding a DSSE envelope whose payload is an
in-toto statement; its predicate lists every file of the model with its sha256, its subject
is the digest of that list. It is made and checked here with `cryptography` alone (ECDSA
on P-256/384/521): importing `model_signing` costs half a second (the Sigstore client),
which a server's start cannot pay; tests check the two agree both ways.

What is signed, the model as it travels: `model.skops`, the team's code under `code/`, the
training data's profile, and the model card without the fields each hop fills in (its
registry version, its MLflow run, its metrics); the two JSON files are signed in a
canonical form (keys sorted, no spaces), since MLflow and a folder format them apart.
Beside the signature, the provenance — an in-toto statement (SLSA
provenance v1) naming the data, the commit, the params, the gate report and its verdict —
is signed with the same key; a provenance whose gate verdict is not "passed" is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlship.card import CARD_FILE, METRICS_FILE, MODEL_FILE, PROFILE_FILE
from mlship.config.settings import Settings
from mlship.errors import InputError

SIGNATURE_FILE = "model.sig"
PROVENANCE_FILE = "provenance.json"
# files a model directory may hold beside the signed ones: the signature and provenance
# themselves, and the evaluation the image build bakes in
BESIDE = frozenset({SIGNATURE_FILE, PROVENANCE_FILE, METRICS_FILE})
CARD_FIELDS_FILLED_LATER = ("registry", "mlflow", "metrics")
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
STATEMENT = "https://in-toto.io/Statement/v1"
MODEL_PREDICATE = "https://model_signing/signature/v1.0"
PROVENANCE_PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/mlship/mlship/register/v1"
Policy = Literal["off", "checked", "required"]


@dataclass(frozen=True)
class ModelFiles:
    """A model as one hop holds it: each signed file's name and a way to read its bytes."""

    where: str  # for messages: a folder, a models:/ URI, an image
    readers: dict[str, Callable[[], bytes]]

    def digests(self) -> dict[str, str]:
        return {name: hashlib.sha256(read()).hexdigest() for name, read in self.readers.items()}


def canonical_json(found: Any) -> bytes:
    """JSON as signed: keys sorted, no spaces (the registry and a folder format it apart)."""
    return json.dumps(found, sort_keys=True, separators=(",", ":")).encode()


def canonical_card(card: dict[str, Any]) -> bytes:
    """The card as signed: without the fields hops fill in."""
    return canonical_json({k: v for k, v in card.items() if k not in CARD_FIELDS_FILLED_LATER})


def directory_files(folder: Path, card: dict[str, Any] | None = None) -> ModelFiles:
    """The signed files of a model directory (the pipeline's, an image's /opt/model): every
    file but those BESIDE it, the card in its canonical form (`card`: read from the folder
    when not given)."""
    readers: dict[str, Callable[[], bytes]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        name = path.relative_to(folder).as_posix()
        if name in BESIDE or "__pycache__" in path.parts:
            continue
        if path.is_symlink():
            raise InputError(f"{folder}: {name} is a symbolic link; a signed model holds none")
        readers[name] = path.read_bytes if name != CARD_FILE else (lambda: b"")
    if CARD_FILE in readers:
        found = card if card is not None else json.loads((folder / CARD_FILE).read_text())
        readers[CARD_FILE] = lambda: canonical_card(found)
    if PROFILE_FILE in readers:
        profile = folder / PROFILE_FILE
        readers[PROFILE_FILE] = lambda: canonical_json(json.loads(profile.read_text()))
    return ModelFiles(str(folder), readers)


def registry_files(
    model_file: Path, card: dict[str, Any], profile: dict[str, Any] | None, where: str
) -> ModelFiles:
    """The signed files of a registry version: its model file and the `code/` beside it
    (MLflow's own files — MLmodel, the environments — are not the model's), its card, and
    its profile as the run keeps them."""
    folder = model_file.parent
    readers: dict[str, Callable[[], bytes]] = {MODEL_FILE: model_file.read_bytes}
    code = folder / "code"
    for path in sorted(p for p in code.rglob("*") if p.is_file()) if code.is_dir() else []:
        if "__pycache__" not in path.parts:
            readers[path.relative_to(folder).as_posix()] = path.read_bytes
    readers[CARD_FILE] = lambda: canonical_card(card)
    if profile is not None:
        readers[PROFILE_FILE] = lambda: canonical_json(profile)
    return ModelFiles(where, readers)


def _root_digest(resources: list[dict[str, str]]) -> str:
    """The statement's subject: sha256 over the resources' digests in their order."""
    hasher = hashlib.sha256()
    for resource in resources:
        hasher.update(bytes.fromhex(resource["digest"]))
    return hasher.hexdigest()


def model_statement(digests: dict[str, str]) -> dict[str, Any]:
    resources = [
        {"algorithm": "sha256", "name": name, "digest": digest}
        for name, digest in sorted(digests.items())
    ]
    return {
        "_type": STATEMENT,
        "subject": [{"name": "model", "digest": {"sha256": _root_digest(resources)}}],
        "predicateType": MODEL_PREDICATE,
        "predicate": {
            "resources": resources,
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": sorted(BESIDE),
            },
        },
    }


def _pae(payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding of an in-toto payload."""
    return b" ".join([f"DSSEv1 {len(IN_TOTO)} {IN_TOTO} {len(payload)}".encode(), payload])


def _hash_for(key: Any) -> Any:
    from cryptography.hazmat.primitives import hashes

    size = key.curve.key_size
    if size == 256:
        return hashes.SHA256()
    if size == 384:
        return hashes.SHA384()
    if size == 521:
        return hashes.SHA512()
    raise InputError(f"an elliptic-curve key of {size} bits: use P-256, P-384 or P-521")


def key_hint(public_key: Any) -> str:
    """What a bundle names its key by: the sha256 of the key's PEM."""
    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def load_private_key(where: str, pem: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise InputError(f"the signing key {where}: not a PEM private key: {error}") from error
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError(f"the signing key {where}: expected an elliptic-curve key (P-256)")
    return key


def load_public_keys(pems: Iterable[tuple[str, bytes]]) -> list[Any]:
    """The public keys of (where it came from, PEM) pairs."""
    pems = list(pems)
    if not pems:  # no key, no import: a server with no policy pays nothing
        return []
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    keys = []
    for where, pem in pems:
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError as error:
            raise InputError(f"trusted key {where}: not a PEM public key: {error}") from error
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InputError(f"trusted key {where}: expected an elliptic-curve key")
        keys.append(key)
    return keys


def sign_statement(statement: dict[str, Any], private_key: Any) -> bytes:
    """A Sigstore bundle (v0.3) of a DSSE envelope over `statement`, signed with the key."""
    from cryptography.hazmat.primitives.asymmetric import ec

    payload = json.dumps(statement, indent=2).encode()
    signature = private_key.sign(_pae(payload), ec.ECDSA(_hash_for(private_key)))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": key_hint(private_key.public_key())},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": IN_TOTO,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    return json.dumps(bundle).encode()


def sign_model(files: ModelFiles, private_key: Any) -> bytes:
    return sign_statement(model_statement(files.digests()), private_key)


def open_bundle(bundle: bytes, keys: list[Any], what: str) -> dict[str, Any]:
    """The statement a bundle carries, once its signature verifies with one of `keys`;
    InputError saying why not (not a bundle, an untrusted key, a bad signature)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        found = json.loads(bundle)
        envelope = found["dsseEnvelope"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
        hint = found.get("verificationMaterial", {}).get("publicKey", {}).get("hint", "")
        if envelope["payloadType"] != IN_TOTO:
            raise ValueError(f"payload type {envelope['payloadType']!r}")
        statement = json.loads(payload)
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise InputError(f"{what}: not a signature bundle mlship can read: {error}") from error
    trusted = [key for key in keys if not hint or key_hint(key) == hint]
    if not trusted:
        raise InputError(
            f"{what}: signed by a key the policy does not trust (key sha256 {hint[:16]}…)"
        )
    for key in trusted:
        try:
            key.verify(signature, _pae(payload), ec.ECDSA(_hash_for(key)))
        except InvalidSignature:
            continue
        if not isinstance(statement, dict) or statement.get("_type") != STATEMENT:
            raise InputError(f"{what}: its payload is not an in-toto statement")
        return statement
    raise InputError(f"{what}: the signature does not verify with the trusted key")


def listed_files(bundle: bytes) -> set[str]:
    """The file names a signature bundle lists, read WITHOUT checking it: only to know which
    files to fetch before checking it (the check is `verify_model`). Empty when unreadable."""
    try:
        envelope = json.loads(bundle)["dsseEnvelope"]
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
        return {str(r["name"]) for r in statement["predicate"]["resources"]}
    except (ValueError, KeyError, TypeError):
        return set()


@dataclass(frozen=True)
class TrustPolicy:
    """What a hop accepts: the mode and the public keys it trusts."""

    mode: Policy = "checked"
    keys: tuple[Any, ...] = ()

    @classmethod
    def of(cls, settings: Settings, at_least: Policy | None = None) -> TrustPolicy:
        """The deployment's policy (MLSHIP_SIGNATURES, MLSHIP_TRUSTED_KEYS); `at_least`
        raises it for a hop that always requires signatures (a production deploy)."""
        mode: Policy = settings.signatures
        if at_least == "required" or (at_least == "checked" and mode == "off"):
            mode = at_least
        return cls(mode, tuple(load_public_keys(settings.trusted_key_pems)))

    def check(
        self, files: ModelFiles, signature: bytes | None, provenance: bytes | None
    ) -> Verified | None:
        return verify_model(files, signature, provenance, list(self.keys), self.mode)


def check_directory(
    folder: Path,
    trust: TrustPolicy,
    signature: Path | None = None,
    provenance: Path | None = None,
) -> Verified | None:
    """A model directory against its signature and provenance (beside it by default: an
    image's /opt/model; the pipeline keeps them with its reports) under `trust`."""
    found = [
        path.read_bytes() if path.is_file() else None
        for path in (signature or folder / SIGNATURE_FILE, provenance or folder / PROVENANCE_FILE)
    ]
    return trust.check(directory_files(folder), found[0], found[1])


@dataclass(frozen=True)
class Verified:
    root: str  # the signed manifest's digest: the model's identity
    files: int
    provenance: dict[str, Any] | None  # its SLSA predicate, when one was checked


def verify_files(files: ModelFiles, statement: dict[str, Any]) -> str:
    """The manifest's digest, once every file matches it; InputError naming the first file
    that differs, was added or is missing."""
    try:
        predicate = statement["predicate"]
        resources = predicate["resources"]
        root = statement["subject"][0]["digest"]["sha256"]
        if statement["predicateType"] != MODEL_PREDICATE:
            raise ValueError(f"predicate type {statement['predicateType']!r}")
        signed = {r["name"]: r["digest"] for r in resources}
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise InputError(f"{files.where}: the signature lists no model files: {error}") from error
    if _root_digest(resources) != root:
        raise InputError(f"{files.where}: the signature's file list does not add up to its digest")
    found = files.digests()
    for name in sorted(signed.keys() | found.keys()):
        if name not in found:
            raise InputError(f"{files.where}: {name} is signed but missing")
        if name not in signed:
            raise InputError(f"{files.where}: {name} is not signed (a file was added)")
        if found[name] != signed[name]:
            raise InputError(
                f"{files.where}: {name} differs from the signed model (sha256 "
                f"{found[name][:16]}…, signed {signed[name][:16]}…)"
            )
    return str(root)


def verify_model(
    files: ModelFiles,
    signature: bytes | None,
    provenance: bytes | None,
    keys: list[Any],
    policy: Policy,
) -> Verified | None:
    """The check every hop runs before a model is used. `off`: nothing checked. `checked`:
    a signature that is present must verify (with its provenance); an unsigned model
    passes (None). `required`: a model without a valid signature and a provenance of a
    passed gate, by a trusted key, is refused. InputError names what is wrong."""
    if policy == "off":
        return None
    if signature is None:
        if policy == "required":
            raise InputError(
                f"{files.where}: the model is not signed, and the policy requires a signature"
            )
        return None
    if not keys:
        raise InputError(
            f"{files.where}: the model is signed, but no trusted key is set to check it "
            "(MLSHIP_TRUSTED_KEYS)"
        )
    root = verify_files(files, open_bundle(signature, keys, f"{files.where}: {SIGNATURE_FILE}"))
    checked = None
    if provenance is not None:
        checked = verify_provenance(provenance, keys, root, f"{files.where}: {PROVENANCE_FILE}")
    elif policy == "required":
        raise InputError(f"{files.where}: no provenance beside the signature ({PROVENANCE_FILE})")
    return Verified(root, len(files.readers), checked)


def provenance_statement(root: str, predicate: dict[str, Any]) -> dict[str, Any]:
    return {
        "_type": STATEMENT,
        "subject": [{"name": "model", "digest": {"sha256": root}}],
        "predicateType": PROVENANCE_PREDICATE,
        "predicate": predicate,
    }


def verify_provenance(bundle: bytes, keys: list[Any], root: str, what: str) -> dict[str, Any]:
    """The provenance's SLSA predicate, once it verifies, names this model and records a
    passed gate."""
    statement = open_bundle(bundle, keys, what)
    try:
        subject = statement["subject"][0]["digest"]["sha256"]
        gate = statement["predicate"]["buildDefinition"]["internalParameters"]["gate"]
        kind = statement["predicateType"]
    except (KeyError, IndexError, TypeError) as error:
        raise InputError(f"{what}: not a provenance of mlship's register: {error}") from error
    if kind != PROVENANCE_PREDICATE:
        raise InputError(f"{what}: predicate type {kind!r}, expected SLSA provenance")
    if subject != root:
        raise InputError(f"{what}: it is the provenance of another model (sha256 {subject[:16]}…)")
    if gate.get("verdict") != "passed":
        raise InputError(f"{what}: the gate's verdict on this model was {gate.get('verdict')!r}")
    predicate: dict[str, Any] = statement["predicate"]
    return predicate

"""Signing key pairs for tests: a P-256 key as a CI would hold it (PKCS#8 PEM) and its
public key (SubjectPublicKeyInfo PEM), the two files MLSHIP_SIGNING_KEY and
MLSHIP_TRUSTED_KEYS name."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def key_pair(folder: Path, name: str) -> tuple[Any, Path]:
    """The private key (also written to `name`.pem) and the path of `name`.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = folder / f"{name}.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, public

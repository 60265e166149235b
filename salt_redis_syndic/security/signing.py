"""Ed25519 keys: the MoM signs every job; a DC runs only what a trusted key signed.

Redis is transport, never authority: whoever can write the job stream must still hold the
MoM's private key to get anything run.  Keys are identified by a short id derived from the
public key, so several trusted keys can coexist during a rotation.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..errors import ConfigError, RejectedEntry
from ..runtime import write_atomic


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short stable id of a public key (16 hex chars of the SHA-256 of its raw bytes)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


class Signer:
    """Holds a private key; its repr never shows key material."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    def sign(self, body: bytes) -> bytes:
        return self._key.sign(body)

    @property
    def public_pem(self) -> str:
        return public_pem(self.public_key)

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"


def write_private_key(path: str, private_key: Ed25519PrivateKey) -> None:
    """Write ``private_key`` as PEM with owner-only permissions, atomically."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(path, pem, mode=0o600, dir_mode=0o777, fsync=True)
    with open(f"{os.path.splitext(path)[0]}.pub", "w", encoding="ascii") as fh:
        fh.write(public_pem(private_key.public_key()))


def load_or_create_signer(path: str, create: bool = True) -> Signer:
    """Load the MoM's signing key, creating it (mode 0600) on first start."""
    if not os.path.exists(path):
        if not create:
            raise ConfigError("signing_key", f"no private key at {path}")
        write_private_key(path, Ed25519PrivateKey.generate())
    try:
        with open(path, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError("signing_key", f"cannot read an Ed25519 private key from {path}: {err.__class__.__name__}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("signing_key", f"{path} is not an Ed25519 private key")
    return Signer(key)


def load_public(spec: str, option: str = "trusted_keys") -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM string or a file path; errors name ``option``."""
    data = spec.encode() if "-----BEGIN" in spec else None
    # Name a path, never echo PEM text: it may be a private key pasted by mistake.
    what = "a PEM string" if data is not None else repr(spec[:200])
    if data is None:
        try:
            with open(spec, "rb") as fh:
                data = fh.read()
        except OSError as err:
            raise ConfigError(option, f"cannot read {spec}: {err.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(option, f"not a PEM public key: {what}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(option, f"not an Ed25519 public key: {what}")
    return key


class Verifier:
    """The set of public keys a DC trusts, by key id."""

    def __init__(self, specs: Iterable[str]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for spec in specs:
            key = load_public(spec)
            self._keys[key_id(key)] = key

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def verify(self, kid: str, signature: bytes, body: bytes) -> None:
        """Raise :class:`RejectedEntry` unless ``signature`` over ``body`` is valid for ``kid``."""
        key = self._keys.get(kid)
        if key is None:
            raise RejectedEntry("unknown_key", f"key id {kid!r} is not trusted")
        try:
            key.verify(signature, body)
        except InvalidSignature:
            raise RejectedEntry("bad_signature", f"signature does not match key {kid}") from None

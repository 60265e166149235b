"""Signed and encrypted wrappers around a record's body: what sits in Redis around the record.

A *sealed* record (``seal``) carries the exact signed body bytes, the signature and the key id,
so verification needs no canonicalisation step: what was signed is what is parsed, and nothing
is parsed before the signature is checked (:func:`open_sealed`).  A *wrapped* body (``wrap``)
is encrypted with a payload key (``security.confidential.PayloadKey``); the wrapper sits inside
the signature.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import RejectedEntry
from ..security.confidential import NONCE_BYTES, PayloadKey
from ..security.signing import Signer
from .codec import KEY_ID_RE, MAX_SIGNATURE_BYTES, boundary, pack, require, unpack

WRAPPED_KIND = "encrypted"


class Keyring(Protocol):
    """What a reader of DC records needs of ``security.dckeys.DcKeyring``: the DC that signed."""

    def verify(self, kid: str, signature: bytes, body: bytes) -> str: ...


def seal(body: bytes, signer: Signer) -> bytes:
    """Wrap ``body`` with its signature and key id: what a DC writes to Redis."""
    return pack({"b": body, "s": signer.sign(body), "k": signer.key_id})


@boundary
def unseal(data: bytes, max_bytes: int) -> tuple[bytes, bytes, str]:
    """``(body, signature, key_id)`` of a sealed record; the caller verifies before parsing ``body``."""
    doc = unpack(data, max_bytes)
    require(isinstance(doc, dict), "unsigned", "not a sealed record")
    body, sig, kid = doc.get("b"), doc.get("s"), doc.get("k")
    require(isinstance(body, bytes) and isinstance(sig, bytes) and isinstance(kid, str), "unsigned",
            "record carries no body, signature and key id")
    require(len(sig) <= MAX_SIGNATURE_BYTES and bool(KEY_ID_RE.match(kid)), "malformed", "bad signature or key id")
    return body, sig, kid


def open_sealed(raw: bytes, keyring: Keyring, max_bytes: int) -> tuple[bytes, str]:
    """``(body, signer)`` of a sealed record whose signature ``keyring`` accepts (else RejectedEntry).

    ``signer`` is what the keyring's ``verify`` returns: the DC name for a DC keyring.
    """
    body, sig, kid = unseal(raw, max_bytes)
    return body, keyring.verify(kid, sig, body)


def wrap(key: PayloadKey, plaintext: bytes, aad: str) -> bytes:
    nonce, ciphertext = key.encrypt(plaintext, aad.encode())
    return pack({"v": 1, "kind": WRAPPED_KIND, "n": nonce, "c": ciphertext})


def _wrapper(body: bytes) -> Any:
    """The wrapper's map, or None when ``body`` is not msgpack (then it is not wrapped)."""
    try:
        return unpack(body, len(body))
    except RejectedEntry:
        return None


def is_wrapped(body: bytes) -> bool:
    doc = _wrapper(body)
    return isinstance(doc, dict) and doc.get("kind") == WRAPPED_KIND


def unwrap(key: PayloadKey, body: bytes, aad: str) -> bytes:
    """The plaintext of a wrapped record; RejectedEntry if it is not wrapped or not ours."""
    doc = _wrapper(body)
    if not (isinstance(doc, dict) and doc.get("kind") == WRAPPED_KIND):
        raise RejectedEntry("unencrypted", "payload encryption is configured but this record is in clear")
    nonce, ciphertext = doc.get("n"), doc.get("c")
    if not (isinstance(nonce, bytes) and len(nonce) == NONCE_BYTES and isinstance(ciphertext, bytes)):
        raise RejectedEntry("malformed", "encrypted record without nonce or ciphertext")
    return key.open(nonce, ciphertext, aad.encode())

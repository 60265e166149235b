"""Optional confidentiality: job loads and return batches encrypted with a key shared per DC.

For deployments that cannot run TLS end to end (a Redis replica in each DC, a TLS-terminating
proxy...), whatever sits in Redis is readable by whoever can read Redis, and returns can carry
secrets.  With ``payload_key`` on a DC and the same key under ``dc_payload_keys`` on the MoM,
the MoM encrypts each job's load once per DC and the DC encrypts its uplink batches
(ChaCha20-Poly1305, a fresh 96-bit nonce per message, the jid/DC bound as associated data).
Encryption sits *inside* the signature: the signer's key still decides what is accepted, and
a record that should be encrypted but is not is refused (no silent downgrade).
The keys live here; the wrapper record around a ciphertext (``wrap``/``unwrap``) is a wire
format, in ``wire/sealed.py``.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..errors import ConfigError, RejectedEntry

KEY_BYTES = 32
NONCE_BYTES = 12


class PayloadKey:
    """A 256-bit shared key; its repr never shows key material."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_BYTES:
            raise ValueError("a payload key is 32 bytes")
        self._aead = ChaCha20Poly1305(raw)

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        return self._aead.decrypt(nonce, ciphertext, aad)

    def open(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """The plaintext, or RejectedEntry when it was not sealed with this key and ``aad``."""
        try:
            return self.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise RejectedEntry("undecryptable", "payload does not decrypt with this DC's key") from None

    def __repr__(self) -> str:
        return "PayloadKey(***)"


def load_payload_key(spec: str, option: str) -> PayloadKey:
    """A key from base64 text (``openssl rand -base64 32``) or a file holding that text."""
    text = spec.strip()
    if os.sep in text and os.path.exists(text):
        try:
            with open(text, encoding="ascii") as fh:
                text = fh.read().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(option, f"cannot read the key file {spec}: {err.__class__.__name__}") from None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(option, "must be 32 random bytes in base64 (openssl rand -base64 32) or a file holding them") from None
    if len(raw) != KEY_BYTES:
        raise ConfigError(option, f"must decode to {KEY_BYTES} bytes, got {len(raw)}")
    return PayloadKey(raw)


def payload_keys(specs: "tuple[tuple[str, str], ...]", option: str) -> dict[str, PayloadKey]:
    return {dc: load_payload_key(spec, option) for dc, spec in specs}


def generate_key_text() -> str:
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")



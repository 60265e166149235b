"""DC status records read from Redis: unsealed, verified against the DC keyring, decoded, DC-checked."""

from __future__ import annotations

from typing import Protocol

from ..errors import RejectedEntry
from .envelope import DcStatus, decode_status, unseal


class Keyring(Protocol):
    def verify(self, kid: str, signature: bytes, body: bytes) -> str: ...


def read_status(raw: bytes, keyring: Keyring, dc: str, max_bytes: int = 1024 * 1024) -> DcStatus:
    """A DC status record, only if the DC's accepted key signed it (else RejectedEntry)."""
    body, sig, kid = unseal(raw, max_bytes)
    signer_dc = keyring.verify(kid, sig, body)
    status = decode_status(body, max_bytes)
    if signer_dc != dc or status.dc != dc:
        raise RejectedEntry("wrong_dc", f"status of {dc!r} signed by the key of {signer_dc!r}")
    return status

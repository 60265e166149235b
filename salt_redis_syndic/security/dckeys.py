"""The MoM's keyring of DC uplink keys, managed like ``salt-key``.

Each DC signs its uplink batches and status records with its own Ed25519 key and announces
the public half in Redis.  The MoM accepts a batch only if it verifies against the key it
accepted for that DC.  Keys live on the MoM's disk::

    <state_dir>/dc_keys/accepted/<dc>.pub    trusted (or pre-seeded with the ``dc_keys`` option)
    <state_dir>/dc_keys/pending/<dc>.pub     announced, waiting for ``salt-run redis_syndic.accept <dc>``
    <state_dir>/dc_keys/rejected/<dc>.pub    refused by ``salt-run redis_syndic.reject <dc>``

A key announced through Redis is never trusted by itself: Redis is transport, not authority.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import ConfigError, RejectedEntry
from ..runtime import write_atomic
from .names import NAME_RE
from .signing import key_id, load_public, public_pem

STATES = ("accepted", "pending", "rejected")


@dataclass(frozen=True)
class KeyInfo:
    dc: str
    state: str
    key_id: str


class DcKeyring:
    def __init__(self, directory: str, preseed: Mapping[str, str] | None = None, reload_interval: float = 5.0) -> None:
        self.directory = directory
        self.reload_interval = reload_interval
        self._preseed: dict[str, Ed25519PublicKey] = {}
        for dc, spec in (preseed or {}).items():
            if not NAME_RE.match(str(dc)):
                raise ConfigError("dc_keys", f"{dc!r} is not a DC name")
            self._preseed[str(dc)] = load_public(spec, option="dc_keys")
        self._by_kid: dict[str, tuple[str, Ed25519PublicKey]] = {}
        self._loaded_at = float("-inf")
        self.reload()

    # -- files ------------------------------------------------------------------------------
    def _path(self, state: str, dc: str) -> str:
        if state not in STATES or not NAME_RE.match(dc):
            raise ValueError(f"bad key state or DC name: {state!r}, {dc!r}")
        return os.path.join(self.directory, state, f"{dc}.pub")

    def _read(self, state: str, dc: str) -> Ed25519PublicKey | None:
        try:
            with open(self._path(state, dc), encoding="ascii") as fh:
                return load_public(fh.read(), option="dc_keys")
        except (OSError, ConfigError, ValueError):
            return None

    def _write(self, state: str, dc: str, key: Ed25519PublicKey) -> None:
        write_atomic(self._path(state, dc), public_pem(key).encode("ascii"))

    def _remove(self, state: str, dc: str) -> bool:
        try:
            os.unlink(self._path(state, dc))
            return True
        except FileNotFoundError:
            return False

    def _names(self, state: str) -> list[str]:
        try:
            return sorted(n[:-4] for n in os.listdir(os.path.join(self.directory, state))
                          if n.endswith(".pub") and NAME_RE.match(n[:-4]))
        except FileNotFoundError:
            return []

    # -- trust ------------------------------------------------------------------------------
    def reload(self) -> None:
        by_kid: dict[str, tuple[str, Ed25519PublicKey]] = {}
        for dc, key in self._preseed.items():
            by_kid[key_id(key)] = (dc, key)
        for dc in self._names("accepted"):
            key = self._read("accepted", dc)
            if key is not None:
                by_kid[key_id(key)] = (dc, key)
        self._by_kid = by_kid
        self._loaded_at = time.monotonic()
        self._stamp = self._dir_stamp()

    def _dir_stamp(self) -> tuple[int, ...]:
        """Modification times of the state dirs: an accept or reject by the runner changes them."""
        out = []
        for state in STATES:
            try:
                out.append(os.stat(os.path.join(self.directory, state)).st_mtime_ns)
            except FileNotFoundError:
                out.append(0)
        return tuple(out)

    def verify(self, kid: str, signature: bytes, body: bytes) -> str:
        """The DC whose accepted key signed ``body``; raises :class:`RejectedEntry` otherwise."""
        if self._dir_stamp() != self._stamp:
            self.reload()  # an operator just accepted or rejected a key: effective at once
        entry = self._by_kid.get(kid)
        if entry is None:
            raise RejectedEntry("unknown_key", f"uplink key {kid!r} is not accepted (salt-run redis_syndic.keys)")
        dc, key = entry
        try:
            key.verify(signature, body)
        except InvalidSignature:
            raise RejectedEntry("bad_signature", f"signature does not match the accepted key of DC {dc}") from None
        return dc

    def maybe_reload(self) -> None:
        if self._dir_stamp() != self._stamp or time.monotonic() - self._loaded_at > self.reload_interval:
            self.reload()

    # -- announcements and operator actions -------------------------------------------------
    def note_announced(self, dc: str, pem: str) -> bool:
        """Record a key a DC announced through Redis as pending.  True if it is new."""
        if not NAME_RE.match(dc):
            return False
        try:
            key = load_public(pem, option="dc_keys")
        except ConfigError:
            return False
        kid = key_id(key)
        if kid in self._by_kid:
            return False
        for state in ("pending", "rejected"):
            known = self._read(state, dc)
            if known is not None and key_id(known) == kid:
                return False
        self._write("pending", dc, key)
        return True

    def accept(self, dc: str) -> KeyInfo:
        key = self._read("pending", dc) or self._read("rejected", dc)
        if key is None:
            raise ConfigError("dc", f"no pending or rejected key for DC {dc!r}")
        self._write("accepted", dc, key)
        self._remove("pending", dc)
        self._remove("rejected", dc)
        self.reload()
        return KeyInfo(dc, "accepted", key_id(key))

    def reject(self, dc: str) -> KeyInfo:
        key = self._read("pending", dc) or self._read("accepted", dc)
        if key is None:
            raise ConfigError("dc", f"no pending or accepted key for DC {dc!r}")
        self._write("rejected", dc, key)
        self._remove("pending", dc)
        self._remove("accepted", dc)
        self.reload()
        return KeyInfo(dc, "rejected", key_id(key))

    def list(self) -> list[KeyInfo]:
        out = [KeyInfo(dc, "accepted (config)", key_id(key)) for dc, key in sorted(self._preseed.items())]
        for state in STATES:
            for dc in self._names(state):
                key = self._read(state, dc)
                if key is not None:
                    out.append(KeyInfo(dc, state, key_id(key)))
        return out

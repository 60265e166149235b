"""The MoM's keyring of DC uplink keys, managed like ``salt-key``.

Each DC signs its uplink batches and status records with its own Ed25519 key and announces
the public half in Redis.  The MoM accepts a batch only if it verifies against the key it
accepted for that DC.  Keys live on the MoM's disk::

    <state_dir>/dc_keys/accepted/<dc>.pub    trusted (or pre-seeded with the ``dc_keys`` option)
    <state_dir>/dc_keys/pending/<dc>.pub     announced, waiting for ``salt-run redis_syndic.accept <dc> <key_id>``
    <state_dir>/dc_keys/rejected/<dc>.pub    refused by ``salt-run redis_syndic.reject <dc>``

A key announced through Redis is never trusted by itself: Redis is transport, not authority.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import ConfigError, RejectedEntry
from ..runtime import Counters, RateLimitedLog, write_atomic
from .names import NAME_RE
from .signing import key_id, load_public, public_pem

log = logging.getLogger(__name__)

STATES = ("accepted", "pending", "rejected")


@dataclass(frozen=True)
class Announced:
    """A key newly recorded as pending for ``dc``; ``replaced``: the pending key id it overwrote."""

    dc: str
    key_id: str
    replaced: str | None = None


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
    def note_announced(self, dc: str, pem: str) -> Announced | None:
        """Record a key a DC announced through Redis as pending; None unless it is new.

        Anyone who can write to Redis can announce: a new key replaces the pending one, and
        :attr:`Announced.replaced` says which key it replaced (an alarm: see :func:`report_announced`).
        """
        if not NAME_RE.match(dc):
            return None
        try:
            key = load_public(pem, option="dc_keys")
        except ConfigError:
            return None
        kid = key_id(key)
        if kid in self._by_kid:
            return None
        for state in ("pending", "rejected"):
            known = self._read(state, dc)
            if known is not None and key_id(known) == kid:
                return None
        before = self._read("pending", dc)
        self._write("pending", dc, key)
        return Announced(dc, kid, key_id(before) if before is not None else None)

    def accept(self, dc: str, kid: str | None = None) -> KeyInfo:
        """Trust DC ``dc``'s pending (or rejected) key, only if its key id is ``kid``: the one the
        DC logs at start, compared by the operator, as with ``salt-key -f``."""
        key = self._read("pending", dc) or self._read("rejected", dc)
        if key is None:
            raise ConfigError("dc", f"no pending or rejected key for DC {dc!r}")
        found = key_id(key)
        if kid is None:
            raise ConfigError("key_id", f"DC {dc}'s key waiting to be accepted has key id {found}; compare it with "
                              f"the key id DC {dc}'s master logs at start, then run: "
                              f"salt-run redis_syndic.accept {dc} {found}")
        if kid != found:
            raise ConfigError("key_id", f"DC {dc}'s key waiting to be accepted has key id {found}, not {kid}: nothing "
                              f"accepted. The announced key changed since you compared it (a DC that made a new key, "
                              f"or someone with write access to Redis announcing theirs); check DC {dc}'s log")
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


def report_announced(news: Announced | None, fire: Callable[[Mapping[str, Any], str], Any], counters: Counters,
                     rl: RateLimitedLog) -> None:
    """Say that a DC announced a new key (pending), and raise an alarm when it replaced another
    pending key: rate-limited log line, counter ``dc_key_changed``, event ``redis_syndic/alarm/key_changed``."""
    if news is None:
        return
    if news.replaced is None:
        log.warning("redis_syndic: DC %s announced a new uplink key %s; its returns are refused until an operator "
                    "compares that key id with the DC's log and runs: salt-run redis_syndic.accept %s %s",
                    news.dc, news.key_id, news.dc, news.key_id)
        fire({"dc": news.dc, "key_id": news.key_id}, f"redis_syndic/key/{news.dc}/pending")
        return
    counters.inc("dc_key_changed")
    rl.log(logging.ERROR, f"key-changed:{news.dc}", "redis_syndic: the pending uplink key of DC %s changed from %s to "
           "%s before it was accepted: a DC that made a new key, or someone with write access to Redis announcing "
           "theirs. Accept only the key id DC %s's master logs (salt-run redis_syndic.accept %s <key_id>)",
           news.dc, news.replaced, news.key_id, news.dc, news.dc)
    if rl.allow(f"key-changed-event:{news.dc}", 10) is not None:
        fire({"dc": news.dc, "key_id": news.key_id, "replaced": news.replaced}, "redis_syndic/alarm/key_changed")

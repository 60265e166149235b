"""Minion key management from the MoM (off by default): signed accept / reject / delete orders.

``salt-run redis_syndic.key <dc> <action> <minion>`` signs an order with the MoM's job key
and appends it to ``<ns>:keycmd:<dc>``.  A DC with ``key_management: true`` verifies it
against ``trusted_keys`` (like a job), checks that it names this DC, has not expired and was
not seen before, then changes exactly that minion's key with ``salt.key``.  Both masters
write an audit line; a refused order is dead-lettered like any hostile entry.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any, Protocol

from ..errors import RejectedEntry
from ..runtime import write_atomic
from ..security.names import NAME_RE
from ..security.signing import Signer
from ..wire.codec import MINION_RE
from ..wire.keyorders import ACTIONS, KeyCommand

log = logging.getLogger(__name__)

TTL = 300.0  # an order not carried out within this long is refused (a link that heals late)


def make_command(dc: str, minion: str, action: str, origin: str, by: str, now: float | None = None) -> KeyCommand:
    """An order, validated here so that the runner fails before anything is sent."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if not NAME_RE.match(dc):
        raise ValueError(f"{dc!r} is not a DC name")
    if not MINION_RE.match(minion) or any(c in minion for c in "*?[]"):
        raise ValueError(f"{minion!r} is not one minion id (no globs: one key per order)")
    now = time.time() if now is None else now
    return KeyCommand(dc, minion, action, now, now + TTL, secrets.token_hex(16), origin, by[:64])


class KeyActions(Protocol):
    def apply(self, action: str, minion: str) -> str: ...


class SeenOrders:
    """Ids of orders already carried out, kept on disk until they expire (no replay)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, encoding="ascii") as fh:
                data = json.load(fh)
            self.cursor: str = str(data.get("cursor", ""))
            self.ids: dict[str, float] = {str(k): float(v) for k, v in data.get("ids", {}).items()}
        except (OSError, ValueError, AttributeError):
            self.cursor, self.ids = "", {}

    def save(self, now: float) -> None:
        self.ids = {k: v for k, v in self.ids.items() if v >= now - 3600}
        write_atomic(self.path, json.dumps({"cursor": self.cursor, "ids": self.ids}).encode("ascii"))


def carry_out(cmd: KeyCommand, kid: str, dc: str, seen: SeenOrders, actions: KeyActions, now: float,
              skew: float) -> KeyCommand:
    """Check one verified order (``wire/keyorders.decode_command``) and carry it out.

    Raises :class:`RejectedEntry` when it must not run.
    """
    if cmd.dc != dc:
        raise RejectedEntry("not_for_this_dc", f"key order {cmd.id} is for DC {cmd.dc}")
    if cmd.id in seen.ids:
        raise RejectedEntry("replayed", f"key order {cmd.id} was already carried out")
    if now > cmd.expires_at + skew:
        raise RejectedEntry("expired", f"key order {cmd.id} expired {now - cmd.expires_at:.0f}s ago")
    if cmd.issued_at > now + skew:
        raise RejectedEntry("from_future", f"key order {cmd.id} issued {cmd.issued_at - now:.0f}s in the future")
    seen.ids[cmd.id] = cmd.expires_at
    result = actions.apply(cmd.action, cmd.minion)
    log.warning("redis_syndic: AUDIT key of minion %s on DC %s: %s (%s) by order %s of MoM %s (key %s, sent by %s)",
                cmd.minion, dc, cmd.action, result, cmd.id, cmd.origin, kid, cmd.by or "?")
    return cmd


def sign_command(cmd: KeyCommand, signer: Signer) -> dict[str, bytes]:
    from ..wire.sealed import seal

    return {"r": seal(cmd.encode(), signer)}


def send(settings: Any, dc: str, action: str, minion: str, by: str) -> dict[str, Any]:
    """The MoM's side (the runner): sign an order and append it to the DC's order stream."""
    from ..errors import ConfigError
    from ..security.signing import load_or_create_signer
    from ..transport.connection import make_client
    from ..transport.keys import Keys
    from ..transport.stream import JobStream

    if not settings.key_management:
        raise ConfigError("key_management", "is off on this MoM: set redis_syndic:key_management: true (and on the DC)")
    try:
        cmd = make_command(dc, minion, action, settings.master_id, by)
    except ValueError as err:
        raise ConfigError("key", str(err)) from None
    signer = load_or_create_signer(settings.signing_key, create=False)
    JobStream(make_client(settings.redis), Keys(settings.namespace).keycmd(dc), 1000).append([sign_command(cmd, signer)])
    log.warning("redis_syndic: AUDIT key order %s sent to DC %s: %s minion %s (by %s, signed with key %s)",
                cmd.id, dc, action, minion, by or "?", signer.key_id)
    return {"dc": dc, "minion": minion, "action": action, "order": cmd.id, "expires_in_seconds": TTL,
            "note": "carried out only if the DC has key_management: true; see salt-run redis_syndic.minions"}

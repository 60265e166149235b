"""A DC's side of key management from the MoM: signed orders read from Redis, checked, carried out, audited.

The decision (is this order for us, fresh, not replayed, allowed?) is :func:`keycmd.carry_out`;
this loop reads the stream, applies it and reports (counter, AUDIT log line, dead letter, event).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping

from ..config import Settings
from ..errors import RejectedEntry
from ..runtime import Counters, FireBus, RateLimitedLog
from ..security.signing import Verifier
from ..state.deadletter import DeadLetters
from ..state.rejections import Rejections
from ..transport.keys import Keys
from ..transport.stream import JobStream
from .keycmd import KeyActions, SeenOrders, carry_out
from .store import estate_dir

log = logging.getLogger(__name__)


class KeyOrders:
    """A DC's side of key management from the MoM: read, check, carry out, audit (see :mod:`keycmd`)."""

    def __init__(self, settings: Settings, actions: Callable[[], KeyActions] | None, deadletters: DeadLetters | None,
                 fire: FireBus | None, counters: Counters) -> None:
        assert settings.dc is not None
        self.settings = settings
        self.dc = settings.dc
        self.keys = Keys(settings.namespace)
        self.verifier = Verifier(settings.trusted_keys)
        self.seen = SeenOrders(os.path.join(estate_dir(settings), "keycmd.json"))
        self._actions_factory = actions
        self._actions: KeyActions | None = None
        self.deadletters = deadletters
        self.fire = fire
        self.counters = counters
        self._rl = RateLimitedLog(log)

    def run_pending(self, client: Any, now: float) -> None:
        stream = JobStream(client, self.keys.keycmd(self.dc), 1000)
        if not self.seen.cursor:
            # Orders sent before key management was turned on here are not carried out.
            self.seen.cursor = stream.last_id()
            self.seen.save(now)
        for entry_id, fields in stream.read(self.seen.cursor, count=100, block_ms=None):
            raw = fields.get(b"r", fields.get("r"))
            try:
                if self._actions is None:
                    if self._actions_factory is None:
                        raise RejectedEntry("unsupported", "this engine cannot change minion keys")
                    self._actions = self._actions_factory()
                cmd = carry_out(raw, self.dc, self.verifier, self.seen, self._actions, now, self.settings.clock_skew,
                                self.settings.max_entry_bytes)
                self.counters.inc("key_orders")
                self._fire({"dc": self.dc, "minion": cmd.minion, "action": cmd.action, "order": cmd.id, "by": cmd.by},
                           f"redis_syndic/key_order/{cmd.action}")
            except RejectedEntry as rej:
                # Keyed by entry: the audit trail names every refused order.
                Rejections(self.counters, self.deadletters, self._fire, self._rl, f"dc:{self.dc}").reject(
                    rej, fields, {"dc": self.dc, "entry_id": entry_id}, log_key=f"reject:{entry_id}", entry_id=entry_id,
                    msg="redis_syndic: AUDIT refused key order %s on DC %s: %s (dead-lettered)", args=(entry_id, self.dc, rej))
            except Exception as err:  # salt.key failed: reported, the next order still runs  # noqa: BLE001
                self.counters.inc("key_orders_failed")
                log.error("redis_syndic: AUDIT key order %s on DC %s failed: %s: %s", entry_id, self.dc,
                          err.__class__.__name__, err)
            self.seen.cursor = entry_id
            self.seen.save(now)

    def _fire(self, data: Mapping[str, Any], tag: str) -> None:
        if self.fire is not None:
            try:
                self.fire.fire(data, tag)
            except Exception as err:  # an event must never stop the loop  # noqa: BLE001
                log.warning("redis_syndic: cannot fire %s on the local bus (%s)", tag, err)


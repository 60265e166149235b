"""A DC's side of key management from the MoM: signed orders read from Redis, checked, carried out, audited.

The order is verified by ``wire/keyorders.decode_command``; whether it is carried out (this DC,
not replayed, not expired) is :func:`keycmd.carry_out`; where the loop reads from is
``jobs/stream_position.StreamCursor`` (only a verified order not ahead of the clock moves the
cursor kept on disk; a stream reset is read again, replays are refused by order id).  This loop
reads the stream, applies them and reports (counter, AUDIT log line, dead letter, event).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping

from ..config import Settings
from ..errors import RejectedEntry
from ..jobs.stream_position import StreamCursor, poisoned
from ..runtime import Counters, FireBus, RateLimitedLog
from ..security.signing import Verifier
from ..state.deadletter import DeadLetters
from ..state.rejections import Rejections
from ..transport.keys import Keys
from ..transport.stream import JobStream
from ..wire.keyorders import decode_command
from ..wire.streamids import parse_stream_id
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
        self.position = StreamCursor(self.seen.cursor, settings.clock_skew)
        self._actions_factory = actions
        self._actions: KeyActions | None = None
        self.deadletters = deadletters
        self.fire = fire
        self.counters = counters
        self._rl = RateLimitedLog(log)

    def run_pending(self, client: Any, now: float) -> None:
        stream = JobStream(client, self.keys.keycmd(self.dc), 1000)
        if not self.position.cursor:
            # Orders sent before key management was turned on here are not carried out.
            self.seen.cursor = self.position.start(stream.last_id(), now)
            self.seen.save(now)
        entries = stream.read(self.position.read_from, count=100, block_ms=None)
        if not entries:
            self.check_reset(stream, now)
        for entry_id, fields in entries:
            if self.position.passed(entry_id, self.handle(entry_id, fields, now), now).moved:
                self.seen.cursor = self.position.cursor
            self.seen.save(now)

    def check_reset(self, stream: JobStream, now: float) -> None:
        """A stream whose newest id is below the read position was reset (deleted, recreated): read it again."""
        rewind = self.position.check(stream.last_id())
        if rewind is None:
            return
        self.seen.cursor = self.position.cursor
        self.seen.save(now)
        self.counters.inc("stream_resets")
        log.warning("redis_syndic: the key order stream's newest entry %s is before DC %s's read position %s (the "
                    "stream was deleted or recreated, or an entry far ahead of the clock moved the position): "
                    "reading again from %s; orders carried out are not carried out twice", rewind.last, self.dc,
                    rewind.was, rewind.read_from)
        self._fire({"dc": self.dc, "stream": stream.key, "last": rewind.last, "was": rewind.was,
                    "read_from": rewind.read_from}, f"redis_syndic/stream/{self.dc}/reset")

    def handle(self, entry_id: str, fields: Mapping[Any, Any], now: float) -> bool:
        """Check and carry out one order; True when it verified (signed by a trusted key, well formed)."""
        try:
            sid = parse_stream_id(entry_id)
        except RejectedEntry as rej:
            self._reject(entry_id, rej, fields)
            return False
        try:
            cmd, kid = decode_command(fields.get(b"r", fields.get("r")), self.verifier, self.settings.max_entry_bytes)
        except RejectedEntry as rej:
            self._reject(entry_id, poisoned(rej, sid, now, self.settings.clock_skew), fields)
            return False
        try:
            if self._actions is None:
                if self._actions_factory is None:
                    raise RejectedEntry("unsupported", "this engine cannot change minion keys")
                self._actions = self._actions_factory()
            carry_out(cmd, kid, self.dc, self.seen, self._actions, now, self.settings.clock_skew)
            self.counters.inc("key_orders")
            self._fire({"dc": self.dc, "minion": cmd.minion, "action": cmd.action, "order": cmd.id, "by": cmd.by},
                       f"redis_syndic/key_order/{cmd.action}")
        except RejectedEntry as rej:
            self._reject(entry_id, rej, fields)
        except Exception as err:  # salt.key failed: reported, the next order still runs  # noqa: BLE001
            self.counters.inc("key_orders_failed")
            log.error("redis_syndic: AUDIT key order %s on DC %s failed: %s: %s", entry_id, self.dc,
                      err.__class__.__name__, err)
        return True

    def _reject(self, entry_id: str, rej: RejectedEntry, fields: Mapping[Any, Any]) -> None:
        # Keyed by entry: the audit trail names every refused order (ids far ahead share one key).
        log_key = "reject:id_ahead" if rej.reason == "id_ahead" else f"reject:{entry_id}"
        Rejections(self.counters, self.deadletters, self._fire, self._rl, f"dc:{self.dc}").reject(
            rej, fields, {"dc": self.dc, "entry_id": entry_id}, log_key=log_key, entry_id=entry_id,
            msg="redis_syndic: AUDIT refused key order %s on DC %s: %s (dead-lettered)", args=(entry_id, self.dc, rej))

    def _fire(self, data: Mapping[str, Any], tag: str) -> None:
        if self.fire is not None:
            try:
                self.fire.fire(data, tag)
            except Exception as err:  # an event must never stop the loop  # noqa: BLE001
                log.warning("redis_syndic: cannot fire %s on the local bus (%s)", tag, err)

"""The one reject path: count it, log it (rate-limited), dead-letter it, announce it.

Every loop that refuses a record from Redis (a job entry, an uplink message, a confirmation,
an estate record, a key order) does the same four things; doing them here keeps the counter
names (``rejected_<reason>``), the dead-letter record and the ``redis_syndic/rejected/<reason>``
event the same everywhere, and keeps a flood of hostile records from flooding the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import RejectedEntry
from ..runtime import Counters, RateLimitedLog
from .deadletter import DeadLetters

LOG_PER_MINUTE = 20  # log lines per reason and loop, whatever the log keys
EVENTS_PER_MINUTE = 60  # events per reason and loop


def rejected_tag(reason: str) -> str:
    """The event announcing a rejection, one tag per reason."""
    return f"redis_syndic/rejected/{reason}"


class Rejections:
    """How one loop rejects: its counters, dead letters (None: none kept), bus and log.

    ``source`` names the loop in dead-letter records (``dc:<dc>``, ``mom:<master_id>``);
    ``fire`` is the loop's own way to fire an event (it decides what a bus failure does).
    """

    def __init__(self, counters: Counters, deadletters: DeadLetters | None,
                 fire: Callable[[Mapping[str, Any], str], Any], log: RateLimitedLog, source: str) -> None:
        self.counters = counters
        self.deadletters = deadletters
        self.fire = fire
        self.log = log
        self.source = source

    def reject(self, rej: RejectedEntry, raw: Any, event: Mapping[str, Any], *, log_key: str, msg: str,
               args: Iterable[object] = (), entry_id: str = "", detail: str | None = None,
               count: Iterable[str] = ()) -> None:
        """Reject one record.

        ``msg % args`` is logged at ERROR at most once a minute per ``log_key`` (with the
        repeat count) and ``LOG_PER_MINUTE`` times a minute per reason, whatever the keys; the
        event fires ``EVENTS_PER_MINUTE`` times a minute per reason (the next one says how many
        were ``suppressed``); every rejection is counted; ``count`` names counters bumped besides ``rejected_<reason>``;
        ``detail`` replaces ``rej.detail`` in the dead letter; ``event`` is the event's data
        besides ``reason`` and ``detail``.  Raw bytes are dead-lettered as ``{"raw": ...}``.
        """
        for name in count:
            self.counters.inc(name)
        self.counters.inc(f"rejected_{rej.reason}")
        skipped = self.log.allow(f"rejected-log:{rej.reason}", LOG_PER_MINUTE)
        if skipped is not None:
            more = f" ({skipped} more rejected for this reason were not logged)" if skipped else ""
            self.log.log(logging.ERROR, log_key, msg + more, *args)
        if self.deadletters is not None:
            self.deadletters.add(source=self.source, entry_id=entry_id, reason=rej.reason,
                                 detail=rej.detail if detail is None else detail,
                                 raw={"raw": raw} if isinstance(raw, bytes) else raw)
        skipped = self.log.allow(f"rejected-event:{rej.reason}", EVENTS_PER_MINUTE)
        if skipped is not None:
            extra = {"suppressed": skipped} if skipped else {}
            self.fire({**event, "reason": rej.reason, "detail": rej.detail, **extra}, rejected_tag(rej.reason))

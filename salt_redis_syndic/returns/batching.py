"""What one uplink round sends: spool files -> messages per MoM, within the batch bounds (no I/O).

The ``uplink`` loop (:mod:`.shipper`) reads spool files oldest first and offers each to a
:class:`Round`, which strips the spool-only fields, groups messages per destination MoM and
says when the round is full (``batch_max_messages`` or ``batch_max_bytes``).  A return Salt
trimmed on the event bus is completed from the job cache first; :func:`trimmed` decides
whether to fill it in, wait for the cache, or send it trimmed.
"""

from __future__ import annotations

from typing import Any, Generic, Mapping, TypeVar

T = TypeVar("T")

TRIMMED_WAIT = 30.0  # seconds to wait for the job cache to hold a return trimmed on the bus

FILL, WAIT, SEND_TRIMMED = "fill", "wait", "send_trimmed"


def trimmed(msg: Mapping[str, Any], full: Mapping[str, Any] | None, now: float, wait: float = TRIMMED_WAIT) -> str:
    """A trimmed return: ``FILL`` from the job cache's ``full`` return, ``WAIT`` for it, or ``SEND_TRIMMED``."""
    if full is not None:
        return FILL
    if now - float(msg.get("spooled_at", 0)) < wait:
        return WAIT
    return SEND_TRIMMED


class Round(Generic[T]):
    """The spool files one round takes and their messages per MoM.

    ``taken``: the files (removed from the spool once Redis has the batches); ``by_mom``: the
    messages to seal per destination; ``dropped``: messages without a destination (never sent).
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.taken: list[T] = []
        self.by_mom: dict[str, list[dict[str, Any]]] = {}
        self.dropped: list[dict[str, Any]] = []
        self.count = 0
        self.size = 0

    def add(self, item: T, size: int, messages: list[dict[str, Any]]) -> bool:
        """Take one file's messages; True when the round is full."""
        self.taken.append(item)
        for msg in messages:
            mom = msg.pop("mom", None)
            msg.pop("spooled_at", None)
            if not isinstance(mom, str) or not mom:
                self.dropped.append(msg)
                continue
            self.by_mom.setdefault(mom, []).append(msg)
            self.count += 1
        self.size += size
        return self.count >= self.max_messages or self.size >= self.max_bytes

    def kinds(self, kind: str) -> int:
        """How many messages of ``kind`` (``ret``, ``ev``, ``ack``) the round sends."""
        return sum(1 for messages in self.by_mom.values() for m in messages if m.get("t") == kind)

"""Where a DC stands in a stream it reads: the decisions, no I/O.

:class:`GapWatch`: the stream now starts after the DC's cursor (entries it had not read were
trimmed by ``stream_maxlen`` or lost by Redis); said once per gap, checked once a minute.
"""

from __future__ import annotations

from ..transport.stream import stream_id_key


class GapWatch:
    """When to look at the stream's first id, and whether what it shows is a new gap."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._next = 0.0
        self._reported: str | None = None

    def due(self, now: float, force: bool = False) -> bool:
        if now < self._next and not force:
            return False
        self._next = now + self.interval
        return True

    def gap(self, first: str | None, cursor: str) -> bool:
        """True once per gap: the stream's oldest entry ``first`` is after ``cursor``."""
        if first is None or stream_id_key(first) <= stream_id_key(cursor) or first == self._reported:
            return False
        self._reported = first
        return True

"""What a DC's heartbeat says and when the uplink loop's periodic work is due (no I/O).

The ``uplink`` loop (:mod:`.shipper`) writes the DC's signed status record every
``heartbeat_interval``, reads confirmations every heartbeat (or ``reconcile_interval``) and
samples the spool depth: :class:`Every` says when; :func:`stream_lag` is the status record's lag.
"""

from __future__ import annotations

from ..transport.stream import id_millis


class Every:
    """Due at most once per ``interval`` (``force``: now, and the next one an interval later)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0

    def due(self, now: float, force: bool = False) -> bool:
        if now < self._next and not force:
            return False
        self._next = now + self.interval
        return True


def stream_lag(last_id: str, cursor: str) -> float:
    """Seconds between the stream's newest entry and the DC's cursor (0 when caught up)."""
    return max(0.0, (id_millis(last_id) - id_millis(cursor or "0-0")) / 1000.0)

"""Spool depth samples -> the ``growing`` / ``drained`` transitions operators are told about (no I/O)."""

from __future__ import annotations


class SpoolWatch:
    """Spool depth samples -> ``growing`` / ``drained`` transitions for operators.

    ``growing`` when the depth is at or above ``threshold`` on two samples in a row (a file
    caught between its write and its shipment is not an outage), at most once per
    ``interval`` (a spool that keeps filling and draining does not flood the bus), then
    ``drained`` once it is back to 0.  In between the spool counts as growing whatever its depth.
    """

    def __init__(self, threshold: int, interval: float = 60.0) -> None:
        self.threshold = threshold
        self.interval = interval
        self.growing = False
        self._last_growing = float("-inf")
        self._above = False

    def observe(self, depth: int, now: float) -> str | None:
        if self.growing:
            if depth == 0:
                self.growing = False
                return "drained"
            return None
        above = depth >= self.threshold
        confirmed = above and self._above  # above on the previous sample too
        self._above = above
        if confirmed and now - self._last_growing >= self.interval:
            self.growing = True
            self._last_growing = now
            return "growing"
        return None

"""What the MoM's estate loop keeps on its own disk for the runner: the merged rosters and the drift report.

``<state_dir>/estate/roster/<dc>.mp`` and ``<state_dir>/estate/drift.mp``, each rewritten whole
(atomically), read by :mod:`salt_redis_syndic.ops.estate_report` without Redis or keys.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..config import Settings
from ..runtime import write_atomic
from ..wire.codec import pack
from .roster import RosterView


def estate_dir(settings: Settings) -> str:
    return os.path.join(settings.state_dir, "estate")


class EstateStore:
    """The MoM's estate files; the drift report is written only when it changed."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self._drift_written = b""

    def roster_file(self, dc: str) -> str:
        return os.path.join(self.dir, "roster", f"{dc}.mp")

    def has_roster(self, dc: str) -> bool:
        return os.path.exists(self.roster_file(dc))

    def save_roster(self, dc: str, view: RosterView, now: float, resolution: float) -> None:
        write_atomic(self.roster_file(dc), pack({"dc": dc, "epoch": view.epoch, "seq": view.seq, "updated_at": now,
                                                 "seen_resolution": resolution,
                                                 "minions": {m: e.wire() for m, e in view.minions.items()}}), mode=0o600)

    def save_drift(self, report: Mapping[str, Any], now: float) -> None:
        data = pack({"checked_at": now, **report})
        if data != self._drift_written:
            write_atomic(os.path.join(self.dir, "drift.mp"), data, mode=0o600)
            self._drift_written = data

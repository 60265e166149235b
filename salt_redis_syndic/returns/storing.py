"""Whether a DC's return is stored on the MoM, and the load Salt's job cache is given.

A return is stored once per ``(jid, minion)``, and only for a minion its DC listed in an ack
of that jid: a DC cannot write returns for minions it did not target (``untargeted_minion``).
The stored load is the minion's own, as a native return: the DC's ``_stamp`` dropped, ``jid``
and ``id`` set from the verified message.

Pure: the caller reads the ledger, writes the job cache and records the return as stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import RejectedEntry
from ..wire.uplink import Return


@dataclass(frozen=True)
class Write:
    """Store ``load`` through the job cache (event + cache), then mark it stored."""

    load: dict[str, Any]


@dataclass(frozen=True)
class Duplicate:
    """Stored before (a batch pushed twice, a DC re-sending): counted, not stored again."""


@dataclass(frozen=True)
class Refuse:
    """Not the DC's to store: dead-lettered as ``rejection``."""

    rejection: RejectedEntry


def verdict(ret: Return, targeted: list[str], stored: bool) -> Write | Duplicate | Refuse:
    """``targeted``: the minions ``ret.dc`` listed for ``ret.jid``; ``stored``: stored before."""
    if ret.minion not in targeted:
        return Refuse(RejectedEntry("untargeted_minion", f"DC {ret.dc} did not report {ret.minion} as targeted for job {ret.jid}"))
    if stored:
        return Duplicate()
    return Write(native_load(ret))


def native_load(ret: Return) -> dict[str, Any]:
    load = dict(ret.load)
    load.pop("_stamp", None)
    load["jid"] = ret.jid
    load["id"] = ret.minion
    return load


def never_acked(ret: Return, hold_max: float) -> RejectedEntry:
    """Why a held return is abandoned (the barrier's ``Abandon``)."""
    return RejectedEntry("no_ack", f"DC {ret.dc} never acknowledged job {ret.jid} within {hold_max:.0f}s; "
                                   f"return of {ret.minion} not stored")

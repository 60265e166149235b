"""Whether a DC's return is stored on the MoM, and the load Salt's job cache is given.

A return is stored once per ``(jid, minion)``, and only for a minion its DC listed in an ack
of that jid: a DC cannot write returns for minions it did not target (``untargeted_minion``).
The stored load is the minion's own, as a native return: the DC's ``_stamp`` dropped, ``jid``
and ``id`` set from the verified message.

A store counts once the job cache kept the return (``salt_adapter.JobCache.store_job`` checks
it and raises :class:`~salt_redis_syndic.errors.StoreFailed` otherwise).  Until then the
return is not marked stored and its batch is not finished, so the MoM does not confirm it to
its DC, which keeps its copy; the MoM tries the store again later (:class:`StoreRetries`),
without firing the return's event again.  Only a load Salt refuses outright is dead-lettered.

Pure: the caller reads the ledger, writes the job cache and records the return as stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import RejectedEntry, StoreFailed
from ..wire.uplink import Return

T = TypeVar("T")


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


@dataclass(frozen=True)
class Retry:
    """The job cache did not keep the return: try again later, confirm nothing meanwhile."""

    why: str


def after_failure(ret: Return, err: StoreFailed) -> Retry | Refuse:
    if err.retryable:
        return Retry(str(err))
    return Refuse(RejectedEntry("store_refused", f"the job cache refused the return of {ret.minion} "
                                                 f"for job {ret.jid} from DC {ret.dc}: {err}"))


class StoreRetries(Generic[T]):
    """Returns whose store failed, each tried again after a delay that doubles up to ``cap``.

    None is ever dropped here: the DC keeps its copy until the MoM stored and confirmed it.
    """

    def __init__(self, base: float = 1.0, cap: float = 60.0) -> None:
        self.base = base
        self.cap = cap
        self._waiting: list[tuple[float, int, T]] = []
        self._seq = 0

    def delay(self, attempts: int) -> float:
        """Seconds before the next try, after ``attempts`` failed ones."""
        return min(self.cap, self.base * 2 ** max(0, attempts - 1))

    def later(self, item: T, attempts: int, now: float) -> float:
        """Keep ``item`` for a retry after its ``attempts``-th failure; returns the delay."""
        delay = self.delay(attempts)
        self._seq += 1
        self._waiting.append((now + delay, self._seq, item))
        return delay

    def due(self, now: float) -> list[T]:
        """The items to try again now (taken out: :meth:`later` puts back one that fails again)."""
        ready = sorted((w for w in self._waiting if w[0] <= now), key=lambda w: (w[0], w[1]))
        if ready:
            self._waiting = [w for w in self._waiting if w[0] > now]
        return [item for _, _, item in ready]

    def __len__(self) -> int:
        return len(self._waiting)

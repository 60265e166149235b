"""Storing DC returns on the MoM: the I/O that applies the decisions of :mod:`.storing`.

A return goes through the job cache (``salt_adapter.JobCache.store_job``: the event
``salt/job/<jid>/ret/<minion>`` and the cache, checked), then is marked stored in the MoM
ledger; one the job cache did not keep waits in :class:`~.storing.StoreRetries` and is tried
again by the collect loop (:meth:`Storer.due`), the job cache only.  Its batch stays
unfinished meanwhile, so the MoM does not confirm it to the DC.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Protocol

from ..errors import RejectedEntry, StoreFailed
from ..runtime import Counters, RateLimitedLog
from ..state.mom_ledger import MomLedger
from .ingest import HeldReturn
from .storing import Duplicate, Refuse, StoreRetries, after_failure, verdict

log = logging.getLogger(__name__)

Reject = Callable[[str, RejectedEntry, Any], None]  # (what, rejection, raw): the collector's reject path


class ReturnCache(Protocol):
    def store_job(self, load: dict[str, Any], bus: Any) -> None:
        """Event (unless ``bus`` is None) and job cache; raises StoreFailed if the cache did not keep it."""


class Storer:
    def __init__(self, cache: ReturnCache, bus: Any, ledger: MomLedger, counters: Counters, reject: Reject) -> None:
        self.cache = cache
        self.bus = bus
        self.ledger = ledger
        self.counters = counters
        self.reject = reject
        self.retries: StoreRetries[HeldReturn] = StoreRetries()  # stores the job cache did not keep
        self._rl = RateLimitedLog(log)

    def store(self, held: HeldReturn) -> bool:
        """True once the return is settled (stored, a duplicate, refused); False: it waits for a retry."""
        ret = held.ret
        _, targeted = self.ledger.acks(ret.jid).get(ret.dc, ("unknown", []))
        said = verdict(ret, targeted, self.ledger.is_stored(ret.jid, ret.minion))
        if isinstance(said, Refuse):
            self.reject("return", said.rejection, {"jid": ret.jid, "dc": ret.dc, "id": ret.minion})
        elif isinstance(said, Duplicate):
            self.counters.inc("returns_duplicate")
        else:
            try:  # the first attempt fires the return's event; a retry only writes the job cache
                self.cache.store_job(said.load, self.bus if held.attempts == 0 else None)
            except StoreFailed as err:
                return self._failed(held, err)
            self.ledger.mark_stored(ret.jid, ret.minion, ret.dc)
            self.counters.inc("returns_stored")
        return True

    def _failed(self, held: HeldReturn, err: StoreFailed) -> bool:
        ret = held.ret
        said = after_failure(ret, err)
        if isinstance(said, Refuse):
            self.reject("return", said.rejection, {"jid": ret.jid, "dc": ret.dc, "id": ret.minion})
            return True
        held.attempts += 1
        delay = self.retries.later(held, held.attempts, time.time())
        self.counters.inc("returns_store_failed")
        self._rl.log(logging.WARNING, "store", "redis_syndic: %s; trying again in %.0fs (not confirmed to DC %s "
                     "until stored; %d store(s) waiting)", said.why, delay, ret.dc, len(self.retries))
        return False

    def due(self, now: float) -> list[HeldReturn]:
        """The returns to store again now."""
        return self.retries.due(now)

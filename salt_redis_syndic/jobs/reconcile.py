"""Jobs a DC should have but does not: re-append them from the MoM's outbox.

Why: Redis may lose writes it acknowledged (a restart without persistence, a failover before
replication), and with them job stream entries a DC had not read yet, or acks a DC pushed.
The MoM keeps every signed entry it appended (the outbox in :class:`~.ledger.MomLedger`)
until the job expires.  A job is appended again, unchanged (same jid, signature and expiry),
when a DC that should have acknowledged it has not, ``reconcile_interval`` after the last send,
and either

* its stream entry is gone (Redis lost it, or the stream was trimmed past it): the DC can
  never read it; or
* the DC has read past it (its cursor is at or after the entry) and has nothing spooled: its
  ack was lost on the way.

A DC is expected to answer only if the MoM knew it before the job was published and it is
alive.  DCs dedupe by (jid, sub-job) (a job never runs twice) and answer a duplicate with the
ack they recorded, so a re-sent job costs one stream entry and at most one ack per DC.

Batch mode sends several sub-jobs under one jid (:mod:`salt_redis_syndic.wire.subjobs`): each has its own outbox
entry and is reasoned about on its own (a DC that acknowledged the first sub-batch but not the
second still lacks the second).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping

from ..runtime import Counters, FireBus
from ..state.mom_ledger import MomLedger, OutboxJob
from ..transport.stream import JobStream, stream_id_key
from ..wire.codec import unpack
from ..wire.tags import job_event_tag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DcView:
    """What the MoM knows of a live DC from its signed status record and its own ledger."""

    cursor: str
    spool_depth: int
    first_seen: float


def due_resends(jobs: list[OutboxJob], acked: Callable[[str], set[str]], dcs: Mapping[str, DcView],
                entry_present: Callable[[str], bool], now: float, interval: float,
                addressed: Callable[[str], set[str] | None] = lambda jid: None) -> list[tuple[str, list[str]]]:
    """``(jid, DCs that need it)`` for every outbox job to append again (see the module doc)."""
    return [(jid, missing) for jid, _, missing in
            due_subjob_resends(jobs, lambda jid, sub: acked(jid), dcs, entry_present, now, interval, addressed)]


def due_subjob_resends(jobs: list[OutboxJob], acked: Callable[[str, str], set[str]], dcs: Mapping[str, DcView],
                       entry_present: Callable[[str], bool], now: float, interval: float,
                       addressed: Callable[[str], set[str] | None] = lambda jid: None) -> list[tuple[str, str, list[str]]]:
    """``(jid, sub-job, DCs that need it)`` for every outbox entry to append again.

    ``acked(jid, sub)``: the DCs that acknowledged that sub-job (each sub-batch of a batch is
    acknowledged on its own).
    """
    out = []
    for job in jobs:
        if now - job.sent_at < interval:
            continue
        only = addressed(job.jid)
        expected = {dc for dc, view in dcs.items() if view.first_seen < job.created_at and (only is None or dc in only)}
        missing = sorted(expected - acked(job.jid, job.sub))
        if not missing:
            continue
        passed = [dc for dc in missing if dcs[dc].spool_depth == 0
                  and stream_id_key(dcs[dc].cursor) >= stream_id_key(job.entry_id)]
        if passed or not entry_present(job.entry_id):
            out.append((job.jid, job.sub, missing))
    return out


class JobReconciler:
    """Runs :func:`due_resends` every ``interval / 3`` and appends the entries it names."""

    def __init__(self, ledger: MomLedger, stream: JobStream, interval: float, counters: Counters, bus: FireBus,
                 addressed: Callable[[str], set[str] | None] = lambda jid: None) -> None:
        self.ledger = ledger
        self.stream = stream
        self.interval = interval
        self.counters = counters
        self.bus = bus
        self.addressed = addressed
        self._next = 0.0

    def tick(self, dcs: Mapping[str, DcView], now: float) -> list[str]:
        """Append what is due; returns the jids appended again."""
        if now < self._next:
            return []
        self._next = now + self.interval / 3
        due = due_subjob_resends(self.ledger.open_jobs(now), self.ledger.acked_dcs, dcs,
                                 self.stream.has, now, self.interval, self.addressed)
        if not due:
            return []
        entries = []
        for jid, sub, _dcs in due:
            packed = self.ledger.outbox_entry(jid, sub)
            if packed is not None:
                entries.append((jid, sub, unpack(packed, 1 << 30)))
        ids = self.stream.append([fields for _, _, fields in entries])
        self.ledger.mark_sent([(jid, entry_id, sub) for (jid, sub, _), entry_id in zip(entries, ids)])
        self.counters.inc("jobs_resent", len(entries))
        for jid, _sub, dcs_missing in due:
            log.warning("redis_syndic: job %s: no acknowledgement from DC(s) %s and its stream entry is gone or "
                        "their ack was lost; appended again (DCs never run a jid twice)", jid, ", ".join(dcs_missing))
            self.bus.fire({"jid": jid, "dcs": dcs_missing}, job_event_tag(jid, "resent"))
        return [jid for jid, _, _ in entries]

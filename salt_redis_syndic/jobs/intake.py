"""What a DC does with one verified job: the decisions, no I/O.

The ``jobs`` loop (:mod:`.consumer`) reads the stream, decodes each entry and claims its
sub-job in the DC ledger; then it asks here what to do, and applies the answer:

* a new claim: run it (``None``) or settle it unrun (:func:`admit`: expired, issued before the
  DC joined, refused by the DC's policy);
* a claim a crash left pending: :func:`recovered` settles it from the master's saved load, or
  says to admit it again;
* a sub-job settled before (replayed, or re-sent by a MoM that lacks our ack): :func:`again`
  is the ack to send again, at most once per interval (:class:`ReackThrottle`);
* after the local master answered: :func:`published` or :func:`failed`.

A :class:`Settle` is everything the loop does to close a claim: the ledger status, the ack
upward, the counter, the log line and, for expired or refused jobs, an event for the bus.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..security.policy import Policy
from ..wire.jobs import JobEnvelope
from ..wire.subjobs import saved_load_is
from ..wire.tags import job_event_tag
from ..wire.uplink import Ack


@dataclass(frozen=True)
class Settle:
    """Close a claim: ``status`` in the ledger (with ``ack.minions``), ``ack`` upward, the rest for operators."""

    status: str
    ack: Ack
    counter: str | None = None
    level: int = logging.INFO
    message: str = ""
    event: tuple[str, dict[str, Any]] | None = None  # (tag, data) fired on the bus


def admit(job: JobEnvelope, dc: str, sub: str, entry_id: str, now: float, skew: float, joined_at: float,
          policy: Policy) -> Settle | None:
    """A job claimed now: None to publish it, else how to report it as not run."""
    if job.is_expired(now, skew):
        return expired(job, dc, sub, entry_id, now)
    if job.issued_at < joined_at - skew:
        return Settle("before_join", Ack(job.jid, dc, "skipped", reason=f"issued before DC {dc} joined", sub=sub),
                      "jobs_skipped", logging.INFO,
                      f"redis_syndic: job {job.jid} was issued before DC {dc} joined; not run here")
    return refused(job, dc, sub, entry_id, policy)


def expired(job: JobEnvelope, dc: str, sub: str, entry_id: str, now: float) -> Settle:
    age = now - job.expires_at
    fun = job.load.get("fun")
    return Settle("expired", Ack(job.jid, dc, "expired", reason=f"expired {age:.0f}s before it reached DC {dc}", sub=sub),
                  "jobs_expired", logging.WARNING,
                  f"redis_syndic: job {job.jid} ({fun}) from {job.origin} expired {age:.0f}s ago; not run on DC {dc}",
                  (job_event_tag(job.jid, "expired"),
                   {"jid": job.jid, "dc": dc, "fun": fun, "expired_for": age, "entry_id": entry_id}))


def refused(job: JobEnvelope, dc: str, sub: str, entry_id: str, policy: Policy) -> Settle | None:
    """This DC's policy (allow/deny functions and targets): None when it allows the job."""
    reason = policy.check(job.load)
    if reason is None:
        return None
    fun, tgt, tgt_type = job.load.get("fun"), job.load.get("tgt"), job.load.get("tgt_type", "glob")
    return Settle("refused", Ack(job.jid, dc, "refused", reason=f"DC {dc} policy: {reason}"[:300], sub=sub),
                  "jobs_refused", logging.WARNING,
                  f"redis_syndic: job {job.jid} ({fun} on {tgt_type} {tgt!r}) from {job.origin} refused by the "
                  f"policy of DC {dc}: {reason}; not run",
                  (job_event_tag(job.jid, "refused"), {"jid": job.jid, "dc": dc, "fun": fun, "tgt": tgt,
                                                       "tgt_type": tgt_type, "reason": reason, "entry_id": entry_id}))


def published(job: JobEnvelope, dc: str, sub: str, minions: list[str], relay: bool) -> Settle:
    """The local master took the job; ``relay``: this DC is a MoM too, its DCs' minions follow in extensions."""
    return Settle("published", Ack(job.jid, dc, "published", minions=minions, more=relay, sub=sub), "jobs_published",
                  logging.INFO, f"redis_syndic: published job {job.jid} ({job.load.get('fun')}) from {job.origin} "
                                f"to {len(minions)} minion(s) on DC {dc}")


def failed(job: JobEnvelope, dc: str, sub: str, error: str) -> Settle:
    """The local master refused the job for good."""
    return Settle("failed", Ack(job.jid, dc, "failed", reason=error[:300], sub=sub), "jobs_failed", logging.ERROR,
                  f"redis_syndic: local master refused job {job.jid} ({error}): reported as failed")


def recovered(job: JobEnvelope, dc: str, sub: str, saved: Mapping[str, Any] | None, subs: list[str],
              relay: bool) -> Settle | None:
    """A claim left pending by a crash between claiming and settling: did that run publish it?

    ``saved`` is the master's saved load of the jid: it keeps one per jid, so with several
    sub-jobs (a batch) it is the last one published, this one only if its target is this one's.
    None: it was not published; admit it again (expired and policy; it was ours when claimed).
    """
    if not saved or not (subs == [sub] or saved_load_is(saved, job.load)):
        return None
    minions = sorted(saved.get("Minions") or saved.get("minions") or [])
    return Settle("published", Ack(job.jid, dc, "published", minions=minions, more=relay, sub=sub), None,
                  logging.WARNING, f"redis_syndic: job {job.jid} was published before a restart; re-sending its ack")


def again(job: JobEnvelope, dc: str, status: str, row_sub: str, minions: list[str], relay: bool) -> Ack:
    """The ack of a sub-job settled before (``status``), sent again: it may be what the MoM lacks.

    ``row_sub`` is the ledger row's: a whole-jid row (from before sub-jobs) answers with a
    whole-jid ack, as it did then.
    """
    if status == "published":
        return Ack(job.jid, dc, "published", minions=minions, more=relay, sub=row_sub)
    return Ack(job.jid, dc, "skipped" if status == "before_join" else status,
               reason=f"{status} on DC {dc} (acknowledged again)", sub=row_sub)


@dataclass
class ReackThrottle:
    """A replay flood must not become an ack flood: one ack again per sub-job per ``interval``."""

    interval: float
    limit: int = 10_000
    _last: dict[tuple[str, str], float] = field(default_factory=dict)

    def due(self, jid: str, sub: str, now: float) -> bool:
        if now - self._last.get((jid, sub), float("-inf")) < self.interval:
            return False
        if len(self._last) > self.limit:
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
        self._last[(jid, sub)] = now
        return True

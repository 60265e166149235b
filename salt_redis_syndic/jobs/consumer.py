"""DC master role: job stream -> verify, dedupe, expiry, policy -> local publish -> ack upward.

Two loops run in the engine process:

* ``jobs``: reads the job stream from a durable cursor, verifies each entry, claims its jid in
  the ledger (never published twice, even across restarts), publishes it into the local master
  with the MoM's jid and id, and spools an ack naming the targeted minions.
* ``uplink``: ships the spool (acks from here, returns from the returner) to Redis; see
  :mod:`salt_redis_syndic.returns.shipper`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Mapping, Protocol

from ..config import Settings, destinations
from ..errors import RejectedEntry
from ..events.forwarding import fire_down
from ..runtime import Backoff, Counters, RateLimitedLog
from ..runtime import FireBus as Bus  # the name the constructor uses
from ..security.confidential import load_payload_key
from ..security.policy import Policy
from ..security.signing import Verifier
from ..state.deadletter import DeadLetters
from ..state.ledger import DcLedger, forget_after, keep_jid_until
from ..state.rejections import Rejections
from ..state.spool import Spool
from ..transport.connection import TRANSIENT, describe_error, make_client
from ..transport.keys import Keys
from ..transport.stream import JobStream, stream_id_key
from ..wire.jobs import EventsEnvelope, JobEnvelope, decode_entry
from ..wire.subjobs import job_identity, saved_load_is
from ..wire.tags import job_event_tag
from ..wire.uplink import Ack

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, load: Mapping[str, Any], origin: str, timeout: float) -> list[str]: ...


class LoadLookup(Protocol):
    def get_load(self, jid: str) -> dict[str, Any]: ...


class JobConsumer:
    """The ``jobs`` loop of a DC engine."""

    def __init__(self, settings: Settings, publisher: Publisher, cache: LoadLookup, bus: Bus,
                 spool: Spool, ledger: DcLedger, deadletters: DeadLetters, counters: Counters,
                 stop: threading.Event, wake_uplink: threading.Event) -> None:
        assert settings.dc is not None
        self.settings = settings
        self.dc = settings.dc
        self.publisher = publisher
        self.cache = cache
        self.bus = bus
        self.spool = spool
        self.ledger = ledger
        self.deadletters = deadletters
        self.counters = counters
        self.stop = stop
        self.wake_uplink = wake_uplink
        self.verifier = Verifier(settings.trusted_keys)
        self.payload_key = load_payload_key(settings.payload_key, "payload_key") if settings.payload_key else None
        self.policy = Policy.from_settings(settings)
        self.keys = Keys(settings.namespace)
        self.cursor = ledger.cursor(default="")
        self.joined_at = ledger.joined_at()
        self._reacked: dict[tuple[str, str], float] = {}
        self._next_prune = 0.0
        self._next_gap_check = 0.0
        self._gap_reported: str | None = None
        self._rl = RateLimitedLog(log)

    # -- loop ------------------------------------------------------------------------------
    def run(self) -> None:
        read_settings = self.settings.redis_read or self.settings.redis
        client = make_client(read_settings, extra_timeout=self.settings.block_ms / 1000.0)
        stream = JobStream(client, self.keys.jobs, self.settings.stream_maxlen)
        backoff = Backoff()
        while not self.stop.is_set():
            try:
                if not self.cursor:
                    # A DC that never read the stream starts at its end: joining the estate must
                    # not replay the last job_ttl worth of jobs.
                    self.cursor = stream.last_id()
                    self.ledger.set_cursor(self.cursor)
                    log.info("redis_syndic: DC %s starts reading the job stream after %s", self.dc, self.cursor)
                self.check_gap(stream)
                entries = stream.read(self.cursor, count=100, block_ms=self.settings.block_ms)
                if backoff.failing:
                    log.warning("redis_syndic: job stream reachable again at %s", read_settings.safe_url)
                backoff.reset()
            except TRANSIENT as err:
                self.counters.inc("reconnects")
                self._rl.log(logging.WARNING, "read", "redis_syndic: cannot read the job stream at %s (%s); retrying",
                             read_settings.safe_url, describe_error(err))
                self.stop.wait(backoff.next())
                continue
            for entry_id, fields in entries:
                if self.stop.is_set():
                    return
                self.handle(entry_id, fields)
                self.cursor = entry_id
                self.ledger.set_cursor(entry_id)
            self.prune()

    def check_gap(self, stream: JobStream, force: bool = False) -> None:
        """Say so, once per gap, when the stream now starts after our cursor (checked every minute unless ``force``).

        Entries between the two were trimmed (``stream_maxlen``) or lost by Redis before this
        DC read them; the MoM appends again the unexpired jobs this DC does not acknowledge.
        """
        now = time.monotonic()
        if now < self._next_gap_check and not force:
            return
        self._next_gap_check = now + 60
        first = stream.first_id()
        if first is None or stream_id_key(first) <= stream_id_key(self.cursor) or first == self._gap_reported:
            return
        self._gap_reported = first
        self.counters.inc("stream_gaps")
        log.warning("redis_syndic: the job stream now starts at %s, after DC %s's cursor %s: entries it had not read "
                    "may have been trimmed (stream_maxlen) or lost by Redis; the MoM sends unexpired jobs again "
                    "when this DC does not acknowledge them", first, self.dc, self.cursor)
        self.bus.fire({"dc": self.dc, "cursor": self.cursor, "first": first}, f"redis_syndic/stream/{self.dc}/gap")

    def prune(self) -> None:
        """Bound the dedupe memory: forget settled jids long past any job's expiry.

        Safe: an entry replayed after its jid is forgotten is expired by then, and an expired
        job is reported, never run.
        """
        now = time.time()
        if now < self._next_prune:
            return
        self._next_prune = now + 3600
        horizon = forget_after(self.settings.job_ttl, self.settings.clock_skew)
        forgotten = self.ledger.prune(now - horizon)
        if forgotten:
            log.info("redis_syndic: DC %s forgot %d settled job(s) older than %.0fs", self.dc, forgotten, horizon)

    # -- one entry -------------------------------------------------------------------------
    def handle(self, entry_id: str, fields: Mapping[Any, Any]) -> None:
        now = time.time()
        try:
            job = decode_entry(fields, self.verifier, self.settings.max_entry_bytes, now, self.settings.clock_skew,
                               dc=self.dc, payload_key=self.payload_key)
            keep_until = keep_jid_until(job, self.dc, self.settings.job_ttl, self.settings.clock_skew)
        except RejectedEntry as rej:
            self.reject(entry_id, rej, fields)
            return
        if isinstance(job, EventsEnvelope):  # forward_events_down on the MoM
            self.counters.inc("events_received", fire_down(self.bus, job, now, self.settings.clock_skew))
            return
        if not job.addressed_to(self.dc):
            # Addressed to other DCs: not run, not claimed, not acked (the MoM does not wait for us).
            self.counters.inc("jobs_not_addressed")
            log.debug("redis_syndic: job %s is for DC(s) %s, not %s; skipped", job.jid, ", ".join(job.dcs or ()), self.dc)
            return
        # The unit of dedupe is the sub-job: Salt's batch mode publishes each sub-batch under the
        # same jid with its own minion list; a replayed or re-sent entry has the same signed load.
        is_new, status = self.ledger.claim(job.jid, job.origin, job_identity(job.load), keep_until)
        if not is_new:
            if status == "pending":
                self._recover(job)
            else:
                self._duplicate(job, status)
            return
        if job.is_expired(now, self.settings.clock_skew):
            self._expired(entry_id, job, now)
            return
        if job.issued_at < self.joined_at - self.settings.clock_skew:
            self._before_join(job)
            return
        if self._refused(entry_id, job):
            return
        self._publish(job)

    def _publish(self, job: JobEnvelope) -> None:
        from ..salt_adapter import (
            PublishFailed,  # imported lazily: keeps unit tests free of Salt
        )

        backoff = Backoff(base=0.2, cap=5.0)
        while not self.stop.is_set():
            try:
                minions = self.publisher.publish(job.load, job.origin, self.settings.publish_timeout)
                break
            except PublishFailed as err:
                if err.retryable and not job.is_expired(time.time(), self.settings.clock_skew):
                    self._rl.log(logging.WARNING, "publish", "redis_syndic: local master did not take job %s yet (%s); retrying",
                                 job.jid, err)
                    self.stop.wait(backoff.next())
                    continue
                log.error("redis_syndic: local master refused job %s (%s): reported as failed", job.jid, err)
                self.counters.inc("jobs_failed")
                sub = self._row_sub(job)
                self._send_ack(Ack(job.jid, self.dc, "failed", reason=str(err)[:300], sub=sub), job.origin)
                self.ledger.mark(job.jid, "failed", sub=sub)
                return
        else:
            return  # stopping: the claim stays 'pending' and is resolved at the next start
        self.counters.inc("jobs_published")
        log.info("redis_syndic: published job %s (%s) from %s to %d minion(s) on DC %s",
                 job.jid, job.load.get("fun"), job.origin, len(minions), self.dc)
        # relay: this DC is also a MoM for DCs below; their minions follow in ack extensions.
        sub = self._row_sub(job)
        self._send_ack(Ack(job.jid, self.dc, "published", minions=minions, more=self.settings.relay, sub=sub), job.origin)
        self.ledger.mark(job.jid, "published", minions, sub=sub)

    def _row_sub(self, job: JobEnvelope) -> str:
        """The ledger row that settles ``job``: its sub-job's, or a whole-jid row from before sub-jobs."""
        sub = job_identity(job.load)
        record = self.ledger.get(job.jid, sub)
        return record.sub if record is not None else sub

    def _duplicate(self, job: JobEnvelope, status: str) -> None:
        """A jid handled before (replayed, or re-sent by a MoM that lacks our ack): ack again, never run."""
        self.counters.inc("jobs_duplicate")
        sub = job_identity(job.load)
        now = time.monotonic()
        if now - self._reacked.get((job.jid, sub), float("-inf")) < self.settings.reconcile_interval:
            return  # a replay flood must not become an ack flood
        if len(self._reacked) > 10_000:
            self._reacked = {j: t for j, t in self._reacked.items() if now - t < self.settings.reconcile_interval}
        self._reacked[(job.jid, sub)] = now
        record = self.ledger.get(job.jid, sub)
        log.info("redis_syndic: job %s already handled on DC %s (%s); not publishing again, acknowledging again",
                 job.jid, self.dc, status)
        # A whole-jid record (from before sub-jobs) answers with a whole-jid ack, as it did then.
        acked_sub = record.sub if record else sub
        if status == "published":
            ack = Ack(job.jid, self.dc, "published", minions=record.minions if record else [],
                      more=self.settings.relay, sub=acked_sub)
        else:
            ack = Ack(job.jid, self.dc, "skipped" if status == "before_join" else status,
                      reason=f"{status} on DC {self.dc} (acknowledged again)", sub=acked_sub)
        self._send_ack(ack, job.origin)

    def _before_join(self, job: JobEnvelope) -> None:
        """A job issued before this DC engine first ran (re-sent for other DCs): not ours to run."""
        log.info("redis_syndic: job %s was issued before DC %s joined; not run here", job.jid, self.dc)
        self.counters.inc("jobs_skipped")
        sub = self._row_sub(job)
        self._send_ack(Ack(job.jid, self.dc, "skipped", reason=f"issued before DC {self.dc} joined", sub=sub), job.origin)
        self.ledger.mark(job.jid, "before_join", sub=sub)

    def _recover(self, job: JobEnvelope) -> None:
        """A previous run crashed between claiming and settling this job: did it publish?"""
        sub = self._row_sub(job)
        load = self.cache.get_load(job.jid)
        # The master keeps one saved load per jid: with several sub-jobs (a batch), it is the
        # last one published, which is this one only if its target is this one's.
        if load and (self.ledger.subs_of(job.jid) == [sub] or saved_load_is(load, job.load)):
            minions = sorted(load.get("Minions") or load.get("minions") or [])
            log.warning("redis_syndic: job %s was published before a restart; re-sending its ack", job.jid)
            self._send_ack(Ack(job.jid, self.dc, "published", minions=minions, more=self.settings.relay, sub=sub),
                           job.origin)
            self.ledger.mark(job.jid, "published", minions, sub=sub)
        elif job.is_expired(time.time(), self.settings.clock_skew):
            self._expired("", job, time.time())
        elif not self._refused("", job):
            log.warning("redis_syndic: job %s was claimed but never published before a restart; publishing it now", job.jid)
            self._publish(job)

    def _expired(self, entry_id: str, job: JobEnvelope, now: float) -> None:
        age = now - job.expires_at
        log.warning("redis_syndic: job %s (%s) from %s expired %.0fs ago; not run on DC %s",
                    job.jid, job.load.get("fun"), job.origin, age, self.dc)
        self.counters.inc("jobs_expired")
        self.bus.fire({"jid": job.jid, "dc": self.dc, "fun": job.load.get("fun"), "expired_for": age,
                       "entry_id": entry_id}, job_event_tag(job.jid, "expired"))
        sub = self._row_sub(job)
        self._send_ack(Ack(job.jid, self.dc, "expired", reason=f"expired {age:.0f}s before it reached DC {self.dc}", sub=sub),
                       job.origin)
        self.ledger.mark(job.jid, "expired", sub=sub)

    def _refused(self, entry_id: str, job: JobEnvelope) -> bool:
        """Apply this DC's policy (allow/deny functions and targets); a refused job is reported, never run."""
        reason = self.policy.check(job.load)
        if reason is None:
            return False
        fun, tgt, tgt_type = job.load.get("fun"), job.load.get("tgt"), job.load.get("tgt_type", "glob")
        log.warning("redis_syndic: job %s (%s on %s %r) from %s refused by the policy of DC %s: %s; not run",
                    job.jid, fun, tgt_type, tgt, job.origin, self.dc, reason)
        self.counters.inc("jobs_refused")
        self.bus.fire({"jid": job.jid, "dc": self.dc, "fun": fun, "tgt": tgt, "tgt_type": tgt_type,
                       "reason": reason, "entry_id": entry_id}, job_event_tag(job.jid, "refused"))
        sub = self._row_sub(job)
        self._send_ack(Ack(job.jid, self.dc, "refused", reason=f"DC {self.dc} policy: {reason}"[:300], sub=sub), job.origin)
        self.ledger.mark(job.jid, "refused", sub=sub)
        return True

    def _send_ack(self, ack: Ack, mom: str) -> None:
        self.spool.append([{**ack.to_wire(), "mom": dest} for dest in destinations(self.settings, mom)])
        self.wake_uplink.set()

    def reject(self, entry_id: str, rej: RejectedEntry, fields: Mapping[Any, Any]) -> None:
        # Keyed by entry: each hostile entry is logged once (operators and tests match its id).
        Rejections(self.counters, self.deadletters, self.bus.fire, self._rl, f"dc:{self.dc}").reject(
            rej, fields, {"dc": self.dc, "entry_id": entry_id}, log_key=f"reject:{entry_id}", entry_id=entry_id,
            count=("jobs_rejected",), msg="redis_syndic: rejected job stream entry %s on DC %s: %s (dead-lettered, not run)",
            args=(entry_id, self.dc, rej))


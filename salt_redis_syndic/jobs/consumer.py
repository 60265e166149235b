"""DC master role, the ``jobs`` loop: job stream -> verify, claim -> local publish -> ack upward.

It reads the job stream from a durable cursor, verifies each entry (``wire/jobs.decode_entry``),
claims its sub-job in the ledger (never published twice, even across restarts), publishes it
into the local master with the MoM's jid and id, and spools an ack naming the targeted minions.
What to do with each job is decided in :mod:`.intake`, where the loop stands in the stream in
:mod:`.stream_position`; this module does the I/O.  The spool goes up in the ``uplink`` loop
(:mod:`salt_redis_syndic.returns.shipper`).
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
from ..transport.stream import JobStream
from ..wire.jobs import EventsEnvelope, JobEnvelope, decode_entry
from ..wire.streamids import parse_stream_id
from ..wire.subjobs import job_identity
from ..wire.uplink import Ack
from . import intake
from .stream_position import GapWatch, StreamCursor, poisoned

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
        self.position = StreamCursor(ledger.cursor(default=""), settings.clock_skew)
        self.joined_at = ledger.joined_at()
        self.reacks = intake.ReackThrottle(settings.reconcile_interval)
        self.gaps = GapWatch()
        self._next_prune = 0.0
        self._rl = RateLimitedLog(log)

    @property
    def cursor(self) -> str:
        """The durable cursor: after the last entry that verified and was not ahead of the clock."""
        return self.position.cursor

    @cursor.setter
    def cursor(self, value: str) -> None:
        self.position = StreamCursor(value, self.settings.clock_skew)

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
                    self.ledger.set_cursor(self.position.start(stream.last_id(), time.time()))
                    log.info("redis_syndic: DC %s starts reading the job stream after %s", self.dc,
                             self.position.read_from)
                self.check_gap(stream)
                entries = stream.read(self.position.read_from, count=100, block_ms=self.settings.block_ms)
                if not entries:
                    self.check_reset(stream)
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
                self.passed(entry_id, self.handle(entry_id, fields))
            self.prune()

    def passed(self, entry_id: str, verified: bool) -> None:
        """Entry ``entry_id`` was handled: the cursor on disk follows it only if it verified and is not ahead."""
        step = self.position.passed(entry_id, verified, time.time())
        if step.moved:
            self.ledger.set_cursor(self.position.cursor)
        elif verified and step.ahead:
            self.counters.inc("stream_ids_ahead")
            self._rl.log(logging.WARNING, "ahead", "redis_syndic: job stream entry %s is %.0fs ahead of DC %s's clock "
                         "(clock_skew %.0fs): handled, but the cursor stays at %s (an entry added with an explicit id "
                         "pushed the stream's ids ahead, or Redis's clock is ahead)", entry_id, step.ahead, self.dc,
                         self.settings.clock_skew, self.position.cursor)

    def check_reset(self, stream: JobStream) -> None:
        """After an empty read: a stream whose newest id is below our read position was reset; read it again."""
        rewind = self.position.check(stream.last_id())
        if rewind is None:
            return
        self.ledger.set_cursor(self.position.cursor)
        self.counters.inc("stream_resets")
        log.warning("redis_syndic: the job stream's newest entry %s is before DC %s's read position %s (the stream "
                    "was deleted or recreated, or an entry far ahead of the clock moved the position): reading again "
                    "from %s; jobs already handled are not run twice", rewind.last, self.dc, rewind.was,
                    rewind.read_from)
        self.bus.fire({"dc": self.dc, "stream": stream.key, "last": rewind.last, "was": rewind.was,
                       "read_from": rewind.read_from}, f"redis_syndic/stream/{self.dc}/reset")

    def check_gap(self, stream: JobStream, force: bool = False) -> None:
        """Say so, once per gap, when the stream now starts after our cursor (checked every minute unless ``force``).

        Entries between the two were trimmed (``stream_maxlen``) or lost by Redis before this
        DC read them; the MoM appends again the unexpired jobs this DC does not acknowledge.
        """
        if not self.gaps.due(time.monotonic(), force):
            return
        first = stream.first_id()
        if not self.gaps.gap(first, self.cursor):
            return
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
    def handle(self, entry_id: str, fields: Mapping[Any, Any]) -> bool:
        """Handle one stream entry; True when it verified (signed by a trusted key, well formed)."""
        now = time.time()
        try:
            sid = parse_stream_id(entry_id)
        except RejectedEntry as rej:
            self.reject(entry_id, rej, fields)
            return False
        try:
            job = decode_entry(fields, self.verifier, self.settings.max_entry_bytes, now, self.settings.clock_skew,
                               dc=self.dc, payload_key=self.payload_key)
            keep_until = keep_jid_until(job, self.dc, self.settings.job_ttl, self.settings.clock_skew)
        except RejectedEntry as rej:
            self.reject(entry_id, poisoned(rej, sid, now, self.settings.clock_skew), fields)
            return False
        if isinstance(job, EventsEnvelope):  # forward_events_down on the MoM
            self.counters.inc("events_received", fire_down(self.bus, job, now, self.settings.clock_skew))
            return True
        if not job.addressed_to(self.dc):
            # Addressed to other DCs: not run, not claimed, not acked (the MoM does not wait for us).
            self.counters.inc("jobs_not_addressed")
            log.debug("redis_syndic: job %s is for DC(s) %s, not %s; skipped", job.jid, ", ".join(job.dcs or ()), self.dc)
            return True
        # The unit of dedupe is the sub-job: Salt's batch mode publishes each sub-batch under the
        # same jid with its own minion list; a replayed or re-sent entry has the same signed load.
        is_new, status = self.ledger.claim(job.jid, job.origin, job_identity(job.load), keep_until)
        if is_new:
            self._admit(entry_id, job, now)
        elif status == "pending":
            self._recover(job)
        else:
            self._duplicate(job, status)
        return True

    def _admit(self, entry_id: str, job: JobEnvelope, now: float) -> None:
        settle = intake.admit(job, self.dc, self._row_sub(job), entry_id, now, self.settings.clock_skew,
                              self.joined_at, self.policy)
        if settle is None:
            self._publish(job)
        else:
            self._settle(job, settle)

    def _publish(self, job: JobEnvelope) -> None:
        from ..salt_adapter import (
            PublishFailed,  # imported lazily: keeps unit tests free of Salt
        )

        backoff = Backoff(base=0.2, cap=5.0)
        while not self.stop.is_set():
            try:
                minions = self.publisher.publish(job.load, job.origin, self.settings.publish_timeout)
            except PublishFailed as err:
                if err.retryable and not job.is_expired(time.time(), self.settings.clock_skew):
                    self._rl.log(logging.WARNING, "publish", "redis_syndic: local master did not take job %s yet (%s); "
                                 "retrying", job.jid, err)
                    self.stop.wait(backoff.next())
                    continue
                self._settle(job, intake.failed(job, self.dc, self._row_sub(job), str(err)))
                return
            self._settle(job, intake.published(job, self.dc, self._row_sub(job), minions, self.settings.relay))
            return
        # stopping: the claim stays 'pending' and is resolved at the next start

    def _row_sub(self, job: JobEnvelope) -> str:
        """The ledger row that settles ``job``: its sub-job's, or a whole-jid row from before sub-jobs."""
        sub = job_identity(job.load)
        record = self.ledger.get(job.jid, sub)
        return record.sub if record is not None else sub

    def _settle(self, job: JobEnvelope, settle: intake.Settle) -> None:
        log.log(settle.level, "%s", settle.message)
        if settle.counter:
            self.counters.inc(settle.counter)
        if settle.event is not None:
            tag, data = settle.event
            self.bus.fire(data, tag)
        self._send_ack(settle.ack, job.origin)
        self.ledger.mark(job.jid, settle.status, settle.ack.minions if settle.status == "published" else None,
                         sub=settle.ack.sub)

    def _duplicate(self, job: JobEnvelope, status: str) -> None:
        """A jid handled before (replayed, or re-sent by a MoM that lacks our ack): ack again, never run."""
        self.counters.inc("jobs_duplicate")
        sub = job_identity(job.load)
        if not self.reacks.due(job.jid, sub, time.monotonic()):
            return  # a replay flood must not become an ack flood
        record = self.ledger.get(job.jid, sub)
        log.info("redis_syndic: job %s already handled on DC %s (%s); not publishing again, acknowledging again",
                 job.jid, self.dc, status)
        ack = intake.again(job, self.dc, status, record.sub if record else sub, record.minions if record else [],
                           self.settings.relay)
        self._send_ack(ack, job.origin)

    def _recover(self, job: JobEnvelope) -> None:
        """A previous run crashed between claiming and settling this job: did it publish?"""
        sub = self._row_sub(job)
        settle = intake.recovered(job, self.dc, sub, self.cache.get_load(job.jid), self.ledger.subs_of(job.jid),
                                  self.settings.relay)
        if settle is not None:
            self._settle(job, settle)
            return
        settle = intake.admit(job, self.dc, sub, "", time.time(), self.settings.clock_skew, float("-inf"), self.policy)
        if settle is not None:
            self._settle(job, settle)
        else:
            log.warning("redis_syndic: job %s was claimed but never published before a restart; publishing it now", job.jid)
            self._publish(job)

    def _send_ack(self, ack: Ack, mom: str) -> None:
        self.spool.append([{**ack.to_wire(), "mom": dest} for dest in destinations(self.settings, mom)])
        self.wake_uplink.set()

    def reject(self, entry_id: str, rej: RejectedEntry, fields: Mapping[Any, Any]) -> None:
        # Keyed by entry: each hostile entry is logged once (operators and tests match its id);
        # entries far ahead of the clock share one key (ids are the attacker's to choose).
        log_key = "reject:id_ahead" if rej.reason == "id_ahead" else f"reject:{entry_id}"
        Rejections(self.counters, self.deadletters, self.bus.fire, self._rl, f"dc:{self.dc}").reject(
            rej, fields, {"dc": self.dc, "entry_id": entry_id}, log_key=log_key, entry_id=entry_id,
            count=("jobs_rejected",), msg="redis_syndic: rejected job stream entry %s on DC %s: %s (dead-lettered, not run)",
            args=(entry_id, self.dc, rej))

"""MoM collect side: DC batches from the uplink list -> native returns on the MoM.

Batches are taken with the reliable-queue pattern.  Acks become
``syndic/<dc>/salt/job/<jid>/new`` events plus ``store_minions``; returns go through
``store_job`` (event + job cache) exactly like native returns, once per (jid, minion), and only
for minions the DC said it targeted.  The release barrier (:mod:`.barrier`) makes the CLI know
every DC's list before it sees any return.

This is the loop that does the I/O: it takes batches from the uplink list, reads status
records and the ledger, stores through the job cache, fires on the bus and writes
confirmations.  What to do is decided elsewhere, without I/O: :mod:`.liveness` (which DCs are
live), :mod:`.ingest` (each message of a batch, and when a batch is finished),
:mod:`.barrier` (when to announce and store), :mod:`.announcement` (what a DC's list says),
:mod:`.storing` (whether a return is stored, when to try again; :mod:`.storer` applies it),
:mod:`.confirm` (the confirmations).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Protocol

from ..config import Settings
from ..errors import RejectedEntry
from ..jobs.publisher import entry_dcs, unpack_fields
from ..jobs.reconcile import JobReconciler
from ..runtime import Backoff, Counters, Gauges, RateLimitedLog
from ..runtime import ListenBus as Bus  # the name the constructor uses
from ..security.confidential import payload_keys
from ..security.dckeys import DcKeyring, report_announced
from ..security.signing import Signer
from ..state.deadletter import DeadLetters
from ..state.mom_ledger import MomLedger
from ..state.rejections import Rejections
from ..transport.connection import TRANSIENT, describe_error, make_client
from ..transport.keys import Keys
from ..transport.queue import UplinkQueue
from ..transport.stream import JobStream
from ..wire.announce import announced_key
from ..wire.sealed import seal
from ..wire.status import read_status, registered_dcs
from ..wire.tags import job_event_tag
from ..wire.uplink import Ack, Event, Return, read_batch
from .announcement import ListOut, announcement, released_minions
from .barrier import Abandon, Announce, Overdue, ReleaseBarrier, Released, Store
from .confirm import UplinkTracker
from .ingest import Batch, HeldReturn, Ingest, LedgerFacts, forwarded
from .liveness import Change, Liveness
from .storer import ReturnCache, Storer
from .storing import never_acked

log = logging.getLogger(__name__)


class Cache(ReturnCache, Protocol):
    def store_minions(self, jid: str, minions: list[str], dc: str) -> None: ...
    def note_dc_minions(self, jid: str, dc: str, minions: list[str]) -> None: ...


class Collector:
    """The ``collect`` loop: uplink list -> native job cache and events on the MoM."""

    def __init__(self, settings: Settings, bus: Bus, cache: Cache, ledger: MomLedger,
                 published: "queue.Queue[tuple[Any, ...]]", deadletters: DeadLetters,
                 counters: Counters, stop: threading.Event, gauges: Gauges | None = None, *,
                 keyring: DcKeyring, signer: Signer | None = None, uplink: UplinkQueue | None = None) -> None:
        self.keyring = keyring
        self.signer = signer  # signs uplink confirmations (none: DCs keep their copies until resend_window)
        self.tracker = UplinkTracker(settings.master_id, ledger.uplink_seqs())
        self.liveness = Liveness(settings.dc_timeout)
        self.reconciler: JobReconciler | None = None
        self.payload_keys = payload_keys(settings.dc_payload_keys, "dc_payload_keys")
        self.settings = settings
        self.bus = bus
        self.cache = cache
        self.ledger = ledger
        self.published = published
        self.deadletters = deadletters
        self.counters = counters
        self.stop = stop
        self.keys = Keys(settings.namespace)
        # relay (a middle master): tell the DC side above when a job's lists are all out.
        self.barrier: ReleaseBarrier[HeldReturn] = ReleaseBarrier(settings.ack_wait, hold_max=settings.hold_max,
                                                                  report_release=settings.relay)
        self.ingest = Ingest(self.barrier)
        self.storer = Storer(cache, bus, ledger, counters, self.reject)
        self.gauges = gauges or Gauges()
        self._next_status = self._next_prune = 0.0
        self._rl = RateLimitedLog(log)
        self._queue = uplink  # this MoM's uplink list (None: run() opens it on its own connection)

    def run(self) -> None:
        client = make_client(self.settings.redis, extra_timeout=1.0)
        if self._queue is None:
            self._queue = UplinkQueue(client, self.keys.uplink(self.settings.master_id), self.keys.inflight(self.settings.master_id))
        self.reconciler = JobReconciler(self.ledger, JobStream(client, self.keys.jobs, self.settings.stream_maxlen),
                                        self.settings.reconcile_interval, self.counters, self.bus, addressed=self.addressed)
        backoff = Backoff(base=0.1, cap=5.0)
        recovered = False
        while not self.stop.is_set():
            try:
                if not recovered:
                    leftovers = self._queue.inflight()
                    if leftovers:
                        log.warning("redis_syndic: resuming %d uplink batch(es) left in flight by a previous run", len(leftovers))
                    for raw in leftovers:
                        self.process(raw)
                    recovered = True
                self.refresh_live_dcs(client)
                self.reconcile(client, time.time())
                self.drain_published()
                for raw in self._queue.take(max_items=50, block_seconds=0.1):
                    self.process(raw)
                self.execute(self.barrier.tick(time.time()))
                self.retry_stores(time.time())
                self.prune()
                backoff.reset()
            except TRANSIENT as err:
                self.counters.inc("reconnects")
                self._rl.log(logging.WARNING, "collect", "redis_syndic: cannot read the uplink at %s (%s); retrying",
                             self.settings.redis.safe_url, describe_error(err))
                self.stop.wait(backoff.next())

    @property
    def live_dcs(self) -> set[str]:
        """The DCs whose heartbeat is recent (:class:`~.liveness.Liveness`)."""
        return self.liveness.live

    @live_dcs.setter
    def live_dcs(self, dcs: set[str]) -> None:
        self.liveness.live = set(dcs)

    @property
    def known_dcs(self) -> set[str]:
        """Every DC registered in the DC set, live or not."""
        return self.liveness.known

    @known_dcs.setter
    def known_dcs(self, dcs: set[str]) -> None:
        self.liveness.known = set(dcs)

    # -- inputs ----------------------------------------------------------------------------
    def refresh_live_dcs(self, client: Any, force: bool = False) -> None:
        """Read every DC's status record (at most once a second unless ``force``): liveness, spool alarms, gauges."""
        now = time.time()
        if now < self._next_status and not force:
            return
        self._next_status = now + min(1.0, self.settings.heartbeat_interval)
        self.keyring.maybe_reload()  # an operator may have accepted or rejected a DC key
        names = registered_dcs(client, self.keys, self.counters, self._rl)
        raws = client.mget([self.keys.status(n) for n in names]) if names else []
        self.gauges.set("uplink_backlog", client.llen(self.keys.uplink(self.settings.master_id)))
        statuses = {}
        for name, raw in zip(names, raws):
            if raw is None:
                continue
            try:
                statuses[name] = read_status(raw, self.keyring, name)
            except RejectedEntry as rej:
                if rej.reason == "unknown_key":
                    self.check_announced_key(client, name)
        look = self.liveness.look(now, names, statuses)
        for dc in look.first_seen:
            self.liveness.note_first_seen(dc, self.ledger.note_dc(dc, now))
        for dc, age in look.ages.items():
            self.gauges.set("dc_alive", 1 if dc in self.liveness.live else 0, dc=dc)
            self.gauges.set("dc_last_seen_seconds", round(age, 3), dc=dc)
        self.announce_changes(look.changes)
        self.gauges.set("live_dcs", len(self.liveness.live))
        self.gauges.set("held_returns", self.barrier.held_count())
        self.gauges.set("store_retries", len(self.storer.retries))

    def addressed(self, jid: str) -> set[str] | None:
        """The DCs an outbox job is addressed to (None: every DC): only those are expected to ack."""
        packed = self.ledger.outbox_entry(jid)
        fields = unpack_fields(packed) if packed is not None else None
        dcs = entry_dcs(fields) if fields is not None else None
        return set(dcs) if dcs is not None else None

    def reconcile(self, client: Any, now: float, confirm_now: bool = False) -> None:
        """Re-append jobs live DCs lack; publish what this MoM has of each DC's batches (once a second unless ``confirm_now``)."""
        if self.reconciler is not None:
            self.reconciler.tick(self.liveness.views(), now)
        if self.signer is None:
            return
        confirms = self.tracker.due(now, force=confirm_now)
        if not confirms:
            return
        pipe = client.pipeline(transaction=False)
        for confirm in confirms:
            pipe.set(self.keys.confirm(confirm.mom, confirm.dc), seal(confirm.encode(), self.signer),
                     ex=int(self.settings.resend_window) + 3600)
        pipe.execute()
        for confirm in confirms:
            self.ledger.save_uplink_seq(confirm.dc, confirm.done_upto, confirm.max_seen)

    def announce_changes(self, changes: list[Change]) -> None:
        """Log and fire what changed among the DCs: up, down, a spool growing or drained."""
        for change in changes:
            level, text = change.note()
            log.log(level, "redis_syndic: %s", text)
            self.bus.fire(*change.event())

    def check_announced_key(self, client: Any, dc: str) -> None:
        """A DC whose key is not accepted: record its announced key as pending, once, loudly."""
        text = announced_key(client.get(self.keys.dckey(dc)))
        if text is not None:
            report_announced(self.keyring.note_announced(dc, text), self.bus.fire, self.counters, self._rl)

    def drain_published(self) -> None:
        now = time.time()
        while True:
            try:
                jid, expires_at, *rest = self.published.get_nowait()
            except queue.Empty:
                return
            addressed = rest[0] if rest and rest[0] is not None else None
            sub = rest[1] if len(rest) > 1 and rest[1] else None  # a batch: each sub-batch is a round
            self.ledger.record_published(jid, expires_at)
            # Only the DCs a job is addressed to are waited for (the others never see it).
            dcs = self.liveness.for_job(addressed)
            self.execute(self.barrier.published(jid, dcs.wait_for, now, sub))
            for text, data, tag in dcs.notices(jid):
                log.warning("redis_syndic: %s", text)
                self.bus.fire(data, tag)

    def process(self, raw: bytes) -> None:
        try:
            decoded = read_batch(raw, self.keyring, self.payload_keys, self.settings.max_entry_bytes)
        except RejectedEntry as rej:
            self.reject("batch", rej, raw)
            self._done(Batch(raw))
            return
        batch = Batch(raw)
        if decoded.seq is not None:
            batch.dc, batch.seq = decoded.dc, decoded.seq
            self.tracker.taken(decoded.dc, decoded.seq)
        for rej, raw_msg in decoded.rejected:
            self.reject("message", rej, raw_msg)
        self.drain_published()  # a job published a moment ago must be known before its first ack
        now = time.time()
        actions = []
        for msg in decoded.messages:
            if isinstance(msg, Event):
                self.fire_forwarded(msg)
            else:
                actions += self.ingest.message(msg, batch, self.record(msg), self.live_dcs, now)
        self.execute(actions)
        if batch.remaining == 0:
            self._done(batch)

    def record(self, msg: Ack | Return) -> LedgerFacts:
        """What the ledger knew of ``msg``'s jid, then ``msg`` recorded if it is an ack."""
        acked = set(self.ledger.acks(msg.jid)) if self.ingest.needs_acks_before(msg.jid) else None
        published = acked is not None and self.ledger.published_at(msg.jid) is not None
        extended = False
        if isinstance(msg, Ack) and msg.ext:
            extended = bool(self.ledger.extend_ack(msg.jid, msg.dc, msg.minions))
        elif isinstance(msg, Ack):
            if not self.ledger.record_ack(msg.jid, msg.dc, msg.status, msg.minions, msg.reason, sub=msg.sub):
                self.counters.inc("acks_duplicate")
        return LedgerFacts(acked, published, extended)

    # -- outputs ---------------------------------------------------------------------------
    def execute(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Announce):
                self.announce(action.jid, action.dc, action.sub)
            elif isinstance(action, Store):
                self._settle(action.item, self.storer.store(action.item))
            elif isinstance(action, Abandon):
                ret = action.item.ret
                self.reject("return", never_acked(ret, self.barrier.hold_max), {"jid": ret.jid, "dc": ret.dc, "id": ret.minion})
                self._settle(action.item, True)
            elif isinstance(action, Released):
                minions = released_minions(self.ledger.acks(action.jid))
                self.bus.fire({"jid": action.jid, "minions": minions}, job_event_tag(action.jid, "released"))
            elif isinstance(action, Overdue):
                log.warning("redis_syndic: job %s: no acknowledgement from DC(s) %s within %.1fs; results may be incomplete",
                            action.jid, ", ".join(action.dcs), self.settings.ack_wait)
                self.bus.fire({"jid": action.jid, "dcs": list(action.dcs)}, job_event_tag(action.jid, "unacknowledged"))

    def announce(self, jid: str, dc: str, sub: str | None = None) -> None:
        """``sub``: announce that sub-job's minions (a batch's sub-batch); None: the DC's whole list."""
        said = announcement(jid, dc, sub, self.ledger.acks(jid).get(dc), self.ledger.ack_rows(jid).get(dc, {}))
        if isinstance(said, ListOut):
            # The event first: the waiting CLI extends its expected set from it.
            self.bus.fire(said.data, said.tag)
            if said.cache_minions:  # the job cache keeps one list per DC: all its sub-jobs' minions
                self.cache.store_minions(jid, said.cache_minions, dc)
                self.cache.note_dc_minions(jid, dc, said.cache_minions)
            return
        log.warning("redis_syndic: job %s was not run on DC %s: %s", jid, dc, said.status)
        self.counters.inc(f"jobs_{said.status}")
        self.bus.fire(said.data, said.tag)

    def fire_forwarded(self, event: Event) -> None:
        """A DC's forwarded event: on this bus under a tag naming the DC (and the original tag if allowed)."""
        self.counters.inc("events_received")
        for data, tag in forwarded(event, self.settings.forward_events_original_tag):
            self.bus.fire(data, tag)

    def retry_stores(self, now: float) -> None:
        """Store again the returns the job cache did not keep (their batches finish once all are stored)."""
        for held in self.storer.due(now):
            self._settle(held, self.storer.store(held))

    def reject(self, what: str, rej: RejectedEntry, raw: Any) -> None:
        Rejections(self.counters, self.deadletters, self.bus.fire, self._rl, f"mom:{self.settings.master_id}").reject(
            rej, raw, {"what": what}, log_key=f"reject:{what}:{rej.reason}",
            msg="redis_syndic: rejected uplink %s: %s (dead-lettered)", args=(what, rej))

    def _settle(self, held: HeldReturn, settled: bool) -> None:
        """A held return was stored or given up (``settled``): its batch may be finished now."""
        if settled and held.batch.settle():
            self._done(held.batch)

    def _done(self, batch: Batch) -> None:
        if not batch.finish():
            return
        assert self._queue is not None
        self._queue.done([batch.raw])
        if batch.seq is not None:
            self.tracker.done(batch.dc, batch.seq)

    def prune(self) -> None:
        now = time.time()
        if now < self._next_prune:
            return
        self._next_prune = now + 3600
        self.ledger.prune(now - max(86400.0, 2 * self.settings.job_ttl))

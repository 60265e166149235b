"""MoM collect side: DC batches from the uplink list -> native returns on the MoM.

Batches are taken with the reliable-queue pattern.  Acks become
``syndic/<dc>/salt/job/<jid>/new`` events plus ``store_minions``; returns go through
``store_job`` (event + job cache) exactly like native returns, once per (jid, minion), and only
for minions the DC said it targeted.  The release barrier (:mod:`.barrier`) makes the CLI know
every DC's list before it sees any return.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import Settings
from ..errors import RejectedEntry
from ..events.forwarding import may_fire_original, up_tag
from ..jobs.publisher import entry_dcs, unpack_fields
from ..jobs.reconcile import DcView, JobReconciler
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
from ..wire.status import DcStatus, read_status, registered_dcs
from ..wire.subjobs import EXTENSION
from ..wire.tags import dc_new_tag, job_event_tag
from ..wire.uplink import Ack, Event, Return, read_batch
from .barrier import Abandon, Announce, Overdue, ReleaseBarrier, Released, Store
from .confirm import UplinkTracker

log = logging.getLogger(__name__)



class Cache(Protocol):
    def store_job(self, load: dict[str, Any], bus: Any) -> None: ...
    def store_minions(self, jid: str, minions: list[str], dc: str) -> None: ...
    def note_dc_minions(self, jid: str, dc: str, minions: list[str]) -> None: ...



@dataclass
class _Batch:
    """An uplink item being processed: removed from the in-flight list when nothing is left."""

    raw: bytes
    remaining: int = 0
    finished: bool = False
    dc: str = ""
    seq: int | None = None  # the DC's number for this batch, once its signature is verified


@dataclass
class _HeldReturn:
    ret: Return
    batch: _Batch = field(repr=False)


class Collector:
    """The ``collect`` loop: uplink list -> native job cache and events on the MoM."""

    def __init__(self, settings: Settings, bus: Bus, cache: Cache, ledger: MomLedger,
                 published: "queue.Queue[tuple[Any, ...]]", deadletters: DeadLetters,
                 counters: Counters, stop: threading.Event, gauges: Gauges | None = None, *,
                 keyring: DcKeyring, signer: Signer | None = None, uplink: UplinkQueue | None = None) -> None:
        self.keyring = keyring
        self.signer = signer  # signs uplink confirmations (none: DCs keep their copies until resend_window)
        self.tracker = UplinkTracker(settings.master_id, ledger.uplink_seqs())
        self.statuses: dict[str, DcStatus] = {}
        self.first_seen: dict[str, float] = {}
        self.reconciler: JobReconciler | None = None
        self._next_confirm = 0.0
        self._next_full_confirm = 0.0
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
        self.barrier: ReleaseBarrier[_HeldReturn] = ReleaseBarrier(settings.ack_wait, hold_max=settings.hold_max,
                                                                   report_release=settings.relay)
        self.gauges = gauges or Gauges()
        self.live_dcs: set[str] = set()
        self.known_dcs: set[str] = set()
        self.spool_growing: set[str] = set()
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
                self.prune()
                backoff.reset()
            except TRANSIENT as err:
                self.counters.inc("reconnects")
                self._rl.log(logging.WARNING, "collect", "redis_syndic: cannot read the uplink at %s (%s); retrying",
                             self.settings.redis.safe_url, describe_error(err))
                self.stop.wait(backoff.next())

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
        live = set()
        for name, raw in zip(names, raws):
            if raw is None:
                continue
            try:
                status = read_status(raw, self.keyring, name)
            except RejectedEntry as rej:
                if rej.reason == "unknown_key":
                    self.check_announced_key(client, name)
                continue
            age = max(0.0, now - status.last_seen)
            alive = age <= self.settings.dc_timeout
            self.gauges.set("dc_alive", 1 if alive else 0, dc=name)
            self.gauges.set("dc_last_seen_seconds", round(age, 3), dc=name)
            if alive:
                live.add(name)
                self.watch_spool(name, status)
                self.statuses[name] = status
                if name not in self.first_seen:
                    self.first_seen[name] = self.ledger.note_dc(name, now)
        for dc in sorted(live - self.live_dcs):
            log.info("redis_syndic: DC %s is up", dc)
            self.bus.fire({"dc": dc, "state": "up"}, f"redis_syndic/dc/{dc}/up")
        for dc in sorted(self.live_dcs - live):
            log.warning("redis_syndic: DC %s stopped sending heartbeats (down)", dc)
            self.bus.fire({"dc": dc, "state": "down"}, f"redis_syndic/dc/{dc}/down")
        self.live_dcs = live
        self.known_dcs = set(names)
        self.gauges.set("live_dcs", len(live))
        self.gauges.set("held_returns", self.barrier.held_count())

    def addressed(self, jid: str) -> set[str] | None:
        """The DCs an outbox job is addressed to (None: every DC): only those are expected to ack."""
        packed = self.ledger.outbox_entry(jid)
        fields = unpack_fields(packed) if packed is not None else None
        dcs = entry_dcs(fields) if fields is not None else None
        return set(dcs) if dcs is not None else None

    def reconcile(self, client: Any, now: float, confirm_now: bool = False) -> None:
        """Re-append jobs live DCs lack; publish what this MoM has of each DC's batches (once a second unless ``confirm_now``)."""
        if self.reconciler is not None:
            views = {dc: DcView(self.statuses[dc].cursor, self.statuses[dc].spool_depth, self.first_seen[dc])
                     for dc in self.live_dcs if dc in self.statuses and dc in self.first_seen}
            self.reconciler.tick(views, now)
        if self.signer is None or (now < self._next_confirm and not confirm_now):
            return
        self._next_confirm = now + 1.0
        full = now >= self._next_full_confirm  # a periodic rewrite also restores a confirmation Redis lost
        if full:
            self._next_full_confirm = now + 5.0
        confirms = self.tracker.confirms(now, all_dcs=full)
        if not confirms:
            return
        pipe = client.pipeline(transaction=False)
        for confirm in confirms:
            pipe.set(self.keys.confirm(confirm.mom, confirm.dc), seal(confirm.encode(), self.signer),
                     ex=int(self.settings.resend_window) + 3600)
        pipe.execute()
        for confirm in confirms:
            self.ledger.save_uplink_seq(confirm.dc, confirm.done_upto, confirm.max_seen)

    def watch_spool(self, dc: str, status: DcStatus) -> None:
        """``redis_syndic/dc/<dc>/spool_growing`` once a DC's spool reaches its threshold, ``.../spool_drained`` at 0."""
        growing = status.spool_growing or 0 < status.spool_warn_depth <= status.spool_depth
        if growing and dc not in self.spool_growing:
            self.spool_growing.add(dc)
            log.warning("redis_syndic: DC %s spool holds %d file(s) (threshold %d): its returns are delayed",
                        dc, status.spool_depth, status.spool_warn_depth)
            self.bus.fire({"dc": dc, "spool_depth": status.spool_depth, "spool_warn_depth": status.spool_warn_depth},
                          f"redis_syndic/dc/{dc}/spool_growing")
        elif dc in self.spool_growing and not status.spool_growing and status.spool_depth == 0:
            self.spool_growing.discard(dc)
            log.info("redis_syndic: DC %s spool drained", dc)
            self.bus.fire({"dc": dc, "spool_depth": 0}, f"redis_syndic/dc/{dc}/spool_drained")

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
            live = self.live_dcs if addressed is None else self.live_dcs & set(addressed)
            self.execute(self.barrier.published(jid, live, now, sub))
            if addressed is not None and set(addressed) - self.known_dcs:
                unknown = sorted(set(addressed) - self.known_dcs)
                log.warning("redis_syndic: job %s is addressed to DC(s) %s that never sent a heartbeat (typo?)",
                            jid, ", ".join(unknown))
                self.bus.fire({"jid": jid, "dcs": unknown}, job_event_tag(jid, "unknown_dcs"))
            known = self.known_dcs if addressed is None else self.known_dcs & set(addressed)
            down = sorted(known - self.live_dcs)
            if down:
                # Named, not silently missing: the CLI will not wait for these DCs.
                log.warning("redis_syndic: job %s published while DC(s) %s are down: their minions run it "
                            "when they are back (within job_ttl); the CLI does not wait for them", jid, ", ".join(down))
                self.bus.fire({"jid": jid, "dcs": down}, job_event_tag(jid, "dc_down"))

    def process(self, raw: bytes) -> None:
        batch = _Batch(raw)
        try:
            decoded = read_batch(raw, self.keyring, self.payload_keys, self.settings.max_entry_bytes)
            signer_dc = decoded.dc
        except RejectedEntry as rej:
            self.reject("batch", rej, raw)
            self._done(batch)
            return
        if decoded.seq is not None:
            batch.dc, batch.seq = signer_dc, decoded.seq
            self.tracker.taken(signer_dc, decoded.seq)
        for rej, raw_msg in decoded.rejected:
            self.reject("message", rej, raw_msg)
        self.drain_published()  # a job published a moment ago must be known before its first ack
        now = time.time()
        actions = []
        for msg in decoded.messages:
            if isinstance(msg, Event):
                self.fire_forwarded(msg)
                continue
            acked = self._acks_before(msg.jid)
            live = self.live_dcs if acked is None or self.ledger.published_at(msg.jid) is not None else {msg.dc}
            if isinstance(msg, Ack) and msg.ext:
                # A middle master learned more of its minions (the DCs below it acked).
                added = self.ledger.extend_ack(msg.jid, msg.dc, msg.minions)
                if added and self.barrier.is_announced(msg.jid, msg.dc):
                    actions.append(Announce(msg.jid, msg.dc))  # the CLI extends its expected set
                actions += self.barrier.ack(msg.jid, msg.dc, live, now, acked, more=msg.more)
            elif isinstance(msg, Ack):
                # One ack per sub-job (batch mode); the DC's minions are the union of them.
                if not self.ledger.record_ack(msg.jid, msg.dc, msg.status, msg.minions, msg.reason, sub=msg.sub):
                    self.counters.inc("acks_duplicate")
                actions += self.barrier.ack(msg.jid, msg.dc, live, now, acked, more=msg.more, sub=msg.sub or None)
            else:
                batch.remaining += 1
                actions += self.barrier.add_return(msg.jid, msg.dc, _HeldReturn(msg, batch), live, now, acked)
        self.execute(actions)
        if batch.remaining == 0:
            self._done(batch)

    # A jid this MoM never published (another MoM's, mirrored here with mirror_returns) waits for
    # no DC: ``live`` above is then just the sender, so each DC's list is announced as it comes.

    def _acks_before(self, jid: str) -> set[str] | None:
        """DCs that acked ``jid`` before the barrier knew it (a MoM restart); read only then."""
        return None if self.barrier.knows(jid) else set(self.ledger.acks(jid))

    # -- outputs ---------------------------------------------------------------------------
    def execute(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Announce):
                self.announce(action.jid, action.dc, action.sub)
            elif isinstance(action, Store):
                held: _HeldReturn = action.item
                self.store(held.ret)
                held.batch.remaining -= 1
                if held.batch.remaining == 0:
                    self._done(held.batch)
            elif isinstance(action, Abandon):
                held = action.item
                self.reject("return", RejectedEntry("no_ack", f"DC {held.ret.dc} never acknowledged job {held.ret.jid} "
                                                              f"within {self.barrier.hold_max:.0f}s; return of {held.ret.minion} not stored"),
                            {"jid": held.ret.jid, "dc": held.ret.dc, "id": held.ret.minion})
                held.batch.remaining -= 1
                if held.batch.remaining == 0:
                    self._done(held.batch)
            elif isinstance(action, Released):
                minions = sorted({m for status, ms in self.ledger.acks(action.jid).values() if status == "published"
                                  for m in ms})
                self.bus.fire({"jid": action.jid, "minions": minions}, job_event_tag(action.jid, "released"))
            elif isinstance(action, Overdue):
                log.warning("redis_syndic: job %s: no acknowledgement from DC(s) %s within %.1fs; results may be incomplete",
                            action.jid, ", ".join(action.dcs), self.settings.ack_wait)
                self.bus.fire({"jid": action.jid, "dcs": list(action.dcs)}, job_event_tag(action.jid, "unacknowledged"))

    def announce(self, jid: str, dc: str, sub: str | None = None) -> None:
        """``sub``: announce that sub-job's minions (a batch's sub-batch); None: the DC's whole list."""
        status, minions = merged = self.ledger.acks(jid).get(dc, ("unknown", []))
        if sub is not None and sub != EXTENSION:
            # The CLI iterator of a sub-batch waits for the minions of this event: only its own.
            status, minions = self.ledger.ack_rows(jid).get(dc, {}).get(sub, merged)
        if status == "published":
            # The event first: the waiting CLI extends its expected set from it.
            self.bus.fire({"jid": jid, "minions": minions, "missing": [], "syndic_id": dc}, dc_new_tag(dc, jid))
            if merged[1]:  # the job cache keeps one list per DC: all its sub-jobs' minions
                self.cache.store_minions(jid, merged[1], dc)
                self.cache.note_dc_minions(jid, dc, merged[1])
            return
        log.warning("redis_syndic: job %s was not run on DC %s: %s", jid, dc, status)
        self.counters.inc(f"jobs_{status}")
        self.bus.fire({"jid": jid, "dc": dc, "status": status}, job_event_tag(jid, status, dc))

    def fire_forwarded(self, event: Event) -> None:
        """A DC's forwarded event: on this bus under a tag naming the DC (and the original tag if allowed)."""
        self.counters.inc("events_received")
        self.bus.fire({"dc": event.dc, "tag": event.tag, "data": event.data}, up_tag(event.dc, event.tag))
        if self.settings.forward_events_original_tag and may_fire_original(event.tag):
            self.bus.fire({**event.data, "redis_syndic_dc": event.dc}, event.tag)

    def store(self, ret: Return) -> None:
        status, minions = self.ledger.acks(ret.jid).get(ret.dc, ("unknown", []))
        if ret.minion not in minions:
            self.reject("return", RejectedEntry("untargeted_minion",
                                                f"DC {ret.dc} did not report {ret.minion} as targeted for job {ret.jid}"),
                        {"jid": ret.jid, "dc": ret.dc, "id": ret.minion})
            return
        if self.ledger.is_stored(ret.jid, ret.minion):
            self.counters.inc("returns_duplicate")
            return
        load = dict(ret.load)
        load.pop("_stamp", None)
        load["jid"] = ret.jid
        load["id"] = ret.minion
        self.cache.store_job(load, self.bus)
        self.ledger.mark_stored(ret.jid, ret.minion, ret.dc)
        self.counters.inc("returns_stored")

    def reject(self, what: str, rej: RejectedEntry, raw: Any) -> None:
        Rejections(self.counters, self.deadletters, self.bus.fire, self._rl, f"mom:{self.settings.master_id}").reject(
            rej, raw, {"what": what}, log_key=f"reject:{what}:{rej.reason}",
            msg="redis_syndic: rejected uplink %s: %s (dead-lettered)", args=(what, rej))

    def _done(self, batch: _Batch) -> None:
        # Once per batch: its last return may be stored while process() still holds it.
        if batch.finished:
            return
        batch.finished = True
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

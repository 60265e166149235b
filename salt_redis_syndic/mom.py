"""MoM role: publish side (bus -> signed job stream) and collect side (uplink -> native returns).

* ``publish``: every ``salt/job/<jid>/publish`` event on the MoM bus carries the full
  minion-bound load; it is wrapped in a versioned envelope with the MoM id, issue time and
  expiry, signed, recorded in the outbox (MoM ledger) and appended to the job stream.  At
  start it appends what a previous run recorded but never sent, and recovers jobs published
  while the engine was not running from the job cache.
* ``collect``: DC batches are taken from the uplink list with the reliable-queue pattern.
  Acks become ``syndic/<dc>/salt/job/<jid>/new`` events plus ``store_minions``; returns go
  through ``store_job`` (event + job cache) exactly like native returns, once per
  (jid, minion), and only for minions the DC said it targeted.  The release barrier
  (:mod:`completeness`) makes the CLI know every DC's list before it sees any return.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from .completeness import Abandon, Announce, Overdue, ReleaseBarrier, Store
from .config import Settings
from .confirm import UplinkTracker
from .confidential import batch_aad, is_wrapped, payload_keys, unwrap
from .dckeys import DcKeyring, read_status
from .deadletter import DeadLetters
from .envelope import Ack, DcStatus, JobEnvelope, Return, decode_batch, encode_job, make_job, pack, seal, unpack, unseal
from .errors import RejectedEntry
from .ledger import MomLedger
from .reconcile import DcView, JobReconciler
from .runtime import Backoff, Counters, Gauges, RateLimitedLog
from .signing import Signer
from .transport.connection import TRANSIENT, describe_error, make_client
from .transport.keys import Keys
from .transport.queue import UplinkQueue
from .transport.stream import JobStream

log = logging.getLogger(__name__)

PUBLISH_TAG = re.compile(r"^salt/job/(\d{20}[0-9A-Za-z_]*)/publish$")


class Bus(Protocol):
    def get(self, wait: float) -> tuple[str, dict[str, Any]] | None: ...
    def fire(self, data: Mapping[str, Any], tag: str) -> bool: ...


class Cache(Protocol):
    def store_job(self, load: dict[str, Any], bus: Any) -> None: ...
    def store_minions(self, jid: str, minions: list[str], dc: str) -> None: ...
    def note_dc_minions(self, jid: str, dc: str, minions: list[str]) -> None: ...


# Users whose jobs carry no auth_list (the master's own key): the only ones safe to replay from
# the saved load, which does not keep the auth_list a DC master re-checks.
_REPLAYABLE_USERS = ("root",)


class JobPublisher:
    """The ``publish`` loop: MoM event bus -> signed entries on the job stream."""

    def __init__(self, settings: Settings, bus: Bus, signer: Signer, published: "queue.Queue[tuple[str, float]]",
                 counters: Counters, stop: threading.Event, *, ledger: MomLedger,
                 recent_loads: Any = None, master_user: str = "root") -> None:
        self.ledger = ledger
        self.recent_loads = recent_loads
        self.replayable_users = {*_REPLAYABLE_USERS, master_user}
        self.settings = settings
        self.bus = bus
        self.signer = signer
        self.payload_keys = payload_keys(settings.dc_payload_keys, "dc_payload_keys")
        self.published = published
        self.counters = counters
        self.stop = stop
        self.keys = Keys(settings.namespace)
        self._rl = RateLimitedLog(log)

    def job_from_event(self, tag: str, data: Mapping[str, Any]) -> JobEnvelope | None:
        match = PUBLISH_TAG.match(tag)
        if not match or not isinstance(data, Mapping) or "fun" not in data or "tgt" not in data:
            return None
        load = dict(data)
        load["jid"] = match.group(1)
        return make_job(load, origin=self.settings.master_id, ttl=self.settings.job_ttl)

    def recover(self) -> list[tuple[JobEnvelope, dict[str, bytes]]]:
        """What a previous run left: outbox entries never appended, and jobs it never saw.

        A job published while the engine was not running (killed, restarting) is only in the
        job cache.  It is replayed from the saved load when it is younger than ``job_ttl`` and
        than the bridge itself, and its user is the master's own (the saved load lacks the
        ``auth_list`` a DC master re-checks for other users: those are reported, not run).
        """
        out: list[tuple[JobEnvelope, dict[str, bytes]]] = []
        for jid, packed, expires_at in self.ledger.unsent():
            fields = unpack_fields(packed)
            if fields is not None and expires_at > time.time():
                log.warning("redis_syndic: job %s was recorded but maybe never appended before a restart; appending it", jid)
                out.append((JobEnvelope(jid=jid, load={}, origin=self.settings.master_id, issued_at=0.0,
                                        expires_at=expires_at), fields))
        if self.recent_loads is None:
            return out
        now = time.time()
        try:
            loads = self.recent_loads(max(now - self.settings.job_ttl, self.ledger.created_at()))
        except Exception as err:  # a recovery scan must never stop the publisher
            log.error("redis_syndic: cannot scan the job cache for jobs published while the engine was down: %s", err)
            return out
        known = self.ledger.in_outbox([jid for jid, _, _ in loads]) | {job.jid for job, _ in out}
        for jid, at, saved in loads:
            if jid in known or "tgt" not in saved or "fun" not in saved or str(saved.get("fun", "")).startswith(("runner.", "wheel.")):
                continue
            user = str(saved.get("user", ""))
            if user not in self.replayable_users:
                log.error("redis_syndic: job %s (%s by %s) was published while the engine was down and is NOT sent "
                          "to the DCs: its authorization list was not saved; run it again", jid, saved.get("fun"), user)
                self.counters.inc("jobs_unrecoverable")
                self.bus.fire({"jid": jid, "fun": saved.get("fun"), "user": user}, f"redis_syndic/job/{jid}/unrecoverable")
                continue
            job = make_job(publish_load(jid, saved), origin=self.settings.master_id, ttl=self.settings.job_ttl, now=at)
            log.warning("redis_syndic: job %s (%s) was published while the engine was down; sending it to the DCs now",
                        jid, saved.get("fun"))
            self.counters.inc("jobs_recovered")
            fields = encode_job(job, self.signer, self.payload_keys)
            self.ledger.add_outbox([(jid, pack(fields), job.expires_at)])
            out.append((job, fields))
        return out

    def run(self) -> None:
        client = make_client(self.settings.redis)
        stream = JobStream(client, self.keys.jobs, self.settings.stream_maxlen)
        pending: list[tuple[JobEnvelope, dict[str, bytes]]] = self.recover()
        recorded = len(pending)
        backoff = Backoff(base=0.1, cap=5.0)
        while not self.stop.is_set():
            event = self.bus.get(wait=0.0 if pending else 0.5)
            while event is not None:  # drain what is already queued: one round trip for a burst
                job = self.job_from_event(*event)
                if job is not None:
                    pending.append((job, encode_job(job, self.signer, self.payload_keys)))
                if len(pending) >= 200:
                    break
                event = self.bus.get(wait=0.0)
            if not pending:
                continue
            if recorded < len(pending):  # into the outbox before Redis: a crash now loses nothing
                self.ledger.add_outbox([(job.jid, pack(fields), job.expires_at) for job, fields in pending[recorded:]])
                recorded = len(pending)
            try:
                ids = stream.append([fields for _, fields in pending])
            except TRANSIENT as err:
                self.counters.inc("reconnects")
                self._rl.log(logging.WARNING, "xadd",
                             "redis_syndic: cannot append %d job(s) to the stream at %s (%s); retrying",
                             len(pending), self.settings.redis.safe_url, describe_error(err))
                self.stop.wait(backoff.next())
                continue
            backoff.reset()
            self.ledger.mark_sent([(job.jid, entry_id) for (job, _), entry_id in zip(pending, ids)])
            for job, _ in pending:
                log.info("redis_syndic: job %s (%s) sent to the DCs", job.jid, job.load.get("fun"))
                self.published.put((job.jid, job.expires_at))
            self.counters.inc("jobs_forwarded", len(pending))
            pending, recorded = [], 0


def unpack_fields(packed: bytes) -> dict[str, bytes] | None:
    """Stream entry fields as the outbox keeps them (our own writing; None if the file is damaged)."""
    try:
        fields = unpack(packed, 1 << 30)
    except RejectedEntry:
        return None
    return fields if isinstance(fields, dict) else None


def publish_load(jid: str, saved: Mapping[str, Any]) -> dict[str, Any]:
    """The minion-bound load ``ClearFuncs._prep_pub`` builds from a saved (clear) load."""
    load = {k: saved[k] for k in ("fun", "arg", "tgt", "tgt_type", "ret", "user", "to") if k in saved}
    load["jid"] = jid
    kwargs = saved.get("kwargs") if isinstance(saved.get("kwargs"), Mapping) else {}
    for key in ("ret_config", "metadata", "module_executors", "executor_opts", "ret_kwargs"):
        if key in kwargs:
            load[key] = kwargs[key]
    if kwargs.get("delimiter") not in (None, ":"):
        load["delimiter"] = kwargs["delimiter"]
    if kwargs.get("start_event"):
        load["start_event"] = True
    return load


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
                 published: "queue.Queue[tuple[str, float]]", deadletters: DeadLetters,
                 counters: Counters, stop: threading.Event, gauges: Gauges | None = None, *,
                 keyring: DcKeyring, signer: Signer | None = None) -> None:
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
        self.barrier: ReleaseBarrier[_HeldReturn] = ReleaseBarrier(settings.ack_wait, hold_max=settings.hold_max)
        self.gauges = gauges or Gauges()
        self.live_dcs: set[str] = set()
        self.known_dcs: set[str] = set()
        self.spool_growing: set[str] = set()
        self._next_status = 0.0
        self._next_prune = 0.0
        self._rl = RateLimitedLog(log)
        self._queue: UplinkQueue | None = None

    def run(self) -> None:
        client = make_client(self.settings.redis, extra_timeout=1.0)
        self._queue = UplinkQueue(client, self.keys.uplink(self.settings.master_id), self.keys.inflight(self.settings.master_id))
        self.reconciler = JobReconciler(self.ledger, JobStream(client, self.keys.jobs, self.settings.stream_maxlen),
                                        self.settings.reconcile_interval, self.counters, self.bus)
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
    def refresh_live_dcs(self, client: Any) -> None:
        """Read every DC's status record (at most once a second): liveness, spool alarms, gauges."""
        now = time.time()
        if now < self._next_status:
            return
        self._next_status = now + min(1.0, self.settings.heartbeat_interval)
        self.keyring.maybe_reload()  # an operator may have accepted or rejected a DC key
        names = sorted(n.decode() if isinstance(n, bytes) else n for n in client.smembers(self.keys.dcs))
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

    def reconcile(self, client: Any, now: float) -> None:
        """Re-append jobs live DCs lack; publish what this MoM has of each DC's batches."""
        if self.reconciler is not None:
            views = {dc: DcView(self.statuses[dc].cursor, self.statuses[dc].spool_depth, self.first_seen[dc])
                     for dc in self.live_dcs if dc in self.statuses and dc in self.first_seen}
            self.reconciler.tick(views, now)
        if self.signer is None or now < self._next_confirm:
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
        pem = client.get(self.keys.dckey(dc))
        if not pem:
            return
        text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else str(pem)
        if self.keyring.note_announced(dc, text):
            log.warning("redis_syndic: DC %s announced a new uplink key; its returns are refused until an operator "
                        "runs: salt-run redis_syndic.accept %s", dc, dc)
            self.bus.fire({"dc": dc}, f"redis_syndic/key/{dc}/pending")

    def drain_published(self) -> None:
        now = time.time()
        while True:
            try:
                jid, expires_at = self.published.get_nowait()
            except queue.Empty:
                return
            self.ledger.record_published(jid, expires_at)
            self.barrier.published(jid, self.live_dcs, now)
            down = sorted(self.known_dcs - self.live_dcs)
            if down:
                # Named, not silently missing: the CLI will not wait for these DCs.
                log.warning("redis_syndic: job %s published while DC(s) %s are down: their minions run it "
                            "when they are back (within job_ttl); the CLI does not wait for them", jid, ", ".join(down))
                self.bus.fire({"jid": jid, "dcs": down}, f"redis_syndic/job/{jid}/dc_down")

    def process(self, raw: bytes) -> None:
        batch = _Batch(raw)
        try:
            body, sig, kid = unseal(raw, self.settings.max_entry_bytes)
            signer_dc = self.keyring.verify(kid, sig, body)  # before parsing anything else
            key = self.payload_keys.get(signer_dc)
            if key is not None:
                body = unwrap(key, body, batch_aad(signer_dc))
            elif is_wrapped(body):
                raise RejectedEntry("no_payload_key", f"DC {signer_dc} encrypts its uplink; set dc_payload_keys:{signer_dc}")
            decoded = decode_batch(body, self.settings.max_entry_bytes)
            if decoded.dc != signer_dc:
                raise RejectedEntry("wrong_dc", f"batch names DC {decoded.dc!r} but is signed by {signer_dc!r}")
        except RejectedEntry as rej:
            self.reject("batch", rej, raw)
            self._done(batch)
            return
        if decoded.seq is not None:
            batch.dc, batch.seq = signer_dc, decoded.seq
            self.tracker.taken(signer_dc, decoded.seq)
        for rej, raw_msg in decoded.rejected:
            self.reject("message", rej, raw_msg)
        now = time.time()
        actions = []
        for msg in decoded.messages:
            acked = self._acks_before(msg.jid)
            if isinstance(msg, Ack):
                if not self.ledger.record_ack(msg.jid, msg.dc, msg.status, msg.minions, msg.reason):
                    self.counters.inc("acks_duplicate")
                actions += self.barrier.ack(msg.jid, msg.dc, self.live_dcs, now, acked)
            else:
                batch.remaining += 1
                actions += self.barrier.add_return(msg.jid, msg.dc, _HeldReturn(msg, batch), self.live_dcs, now, acked)
        self.execute(actions)
        if batch.remaining == 0:
            self._done(batch)

    def _acks_before(self, jid: str) -> set[str] | None:
        """DCs that acked ``jid`` before the barrier knew it (a MoM restart); read only then."""
        return None if self.barrier.knows(jid) else set(self.ledger.acks(jid))

    # -- outputs ---------------------------------------------------------------------------
    def execute(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Announce):
                self.announce(action.jid, action.dc)
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
            elif isinstance(action, Overdue):
                log.warning("redis_syndic: job %s: no acknowledgement from DC(s) %s within %.1fs; results may be incomplete",
                            action.jid, ", ".join(action.dcs), self.settings.ack_wait)
                self.bus.fire({"jid": action.jid, "dcs": list(action.dcs)}, f"redis_syndic/job/{action.jid}/unacknowledged")

    def announce(self, jid: str, dc: str) -> None:
        status, minions = self.ledger.acks(jid).get(dc, ("unknown", []))
        if status == "published":
            # The event first: the waiting CLI extends its expected set from it.
            self.bus.fire({"jid": jid, "minions": minions, "missing": [], "syndic_id": dc},
                          f"syndic/{dc}/salt/job/{jid}/new")
            if minions:
                self.cache.store_minions(jid, minions, dc)
                self.cache.note_dc_minions(jid, dc, minions)
            return
        log.warning("redis_syndic: job %s was not run on DC %s: %s", jid, dc, status)
        self.counters.inc(f"jobs_{status}")
        self.bus.fire({"jid": jid, "dc": dc, "status": status}, f"redis_syndic/job/{jid}/{status}/{dc}")

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
        self.counters.inc(f"rejected_{rej.reason}")
        log.error("redis_syndic: rejected uplink %s: %s (dead-lettered)", what, rej)
        self.deadletters.add(source=f"mom:{self.settings.master_id}", entry_id="", reason=rej.reason, detail=rej.detail,
                             raw={"raw": raw} if isinstance(raw, bytes) else raw)
        self.bus.fire({"what": what, "reason": rej.reason, "detail": rej.detail}, f"redis_syndic/rejected/{rej.reason}")

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


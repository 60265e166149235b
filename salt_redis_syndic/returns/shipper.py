"""DC -> MoM: the DC engine ships the spool to Redis in batches.

The returner fills the spool (:mod:`.spooling`).  ``Shipper`` runs in the DC engine: it
reads spool files oldest first, fills in returns that were too big for the event bus from the
job cache, packs many messages per Redis list item, pushes them per destination MoM in one
round trip, and deletes the files only after Redis accepted them.  Each pushed batch is
numbered and kept in the DC ledger until its MoM confirms it (:mod:`.confirm`),
so batches Redis loses are pushed again.  The decisions are elsewhere, from values: what one
round takes (:mod:`.batching`), when periodic work is due and the stream lag
(:mod:`.heartbeat`), what to push again (:mod:`.confirm`), spool alarms (:mod:`.spool_watch`);
this module does the I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping, Protocol

from ..config import Settings
from ..errors import RejectedEntry
from ..runtime import Backoff, Counters, Gauges, RateLimitedLog
from ..runtime import FireBus as Bus  # the name the constructor uses
from ..security.confidential import load_payload_key
from ..security.signing import Signer, Verifier
from ..state.deadletter import DeadLetters
from ..state.ledger import DcLedger
from ..state.rejections import Rejections
from ..state.spool import Spool, SpoolFile
from ..transport.connection import TRANSIENT, describe_error, make_client
from ..transport.keys import Keys
from ..transport.stream import JobStream
from ..wire.confirm import read_confirm
from ..wire.sealed import seal, wrap
from ..wire.status import DcStatus
from ..wire.uplink import batch_aad, encode_batch
from .batching import FILL, WAIT, Round, trimmed
from .confirm import ResendPlanner, ranges
from .heartbeat import Every, stream_lag
from .spool_watch import SpoolWatch

log = logging.getLogger(__name__)

class ReturnLookup(Protocol):
    def get_return(self, jid: str, minion: str) -> dict[str, Any] | None: ...


class Shipper:
    """The ``uplink`` loop of a DC engine: spool -> Redis, plus the heartbeat."""

    def __init__(self, settings: Settings, spool: Spool, cache: ReturnLookup, counters: Counters,
                 stop: threading.Event, wake: threading.Event, cursor: Callable[[], str],
                 minion_count: Callable[[], int], version: str, gauges: Gauges | None = None,
                 bus: Bus | None = None, *, signer: Signer, ledger: DcLedger,
                 deadletters: DeadLetters | None = None) -> None:
        assert settings.dc is not None
        self.signer = signer
        self.ledger = ledger
        self.deadletters = deadletters
        self.verifier = Verifier(settings.trusted_keys)
        self.planner = ResendPlanner(settings.reconcile_interval)
        self.reconciles = Every(min(settings.heartbeat_interval, settings.reconcile_interval))
        self.payload_key = load_payload_key(settings.payload_key, "payload_key") if settings.payload_key else None
        self.settings = settings
        self.dc = settings.dc
        self.spool = spool
        self.cache = cache
        self.counters = counters
        self.stop = stop
        self.wake = wake
        self.cursor = cursor
        self.minion_count = minion_count
        self.version = version
        self.keys = Keys(settings.namespace)
        self.gauges = gauges or Gauges()
        self.bus = bus
        self.spool_watch = SpoolWatch(settings.spool_warn_depth)
        self._rl = RateLimitedLog(log)
        self.heartbeats = Every(settings.heartbeat_interval)
        self.watches = Every(settings.heartbeat_interval)

    def run(self) -> None:
        client = make_client(self.settings.redis)
        backoff = Backoff(base=0.2, cap=5.0)
        while not self.stop.is_set():
            self.watch_spool()  # also (above all) while Redis is unreachable
            try:
                if backoff.failing:
                    client.ping()  # "works again" only once Redis really answers
                shipped = self.ship_once(client)
                self.heartbeat(client)
                self.reconcile(client)
                if backoff.failing:
                    log.warning("redis_syndic: uplink to %s works again; spool draining", self.settings.redis.safe_url)
                backoff.reset()
            except TRANSIENT as err:
                self.counters.inc("reconnects")
                self._rl.log(logging.WARNING, "push",
                             "redis_syndic: Redis at %s unreachable (%s); %d spool file(s) kept on disk, retrying",
                             self.settings.redis.safe_url, describe_error(err), self.spool.depth())
                self.stop.wait(backoff.next())
                continue
            if not shipped:
                self.wake.wait(self.settings.spool_poll_interval)
                self.wake.clear()

    def ship_once(self, client: Any) -> int:
        """Push one round of spool files; returns how many messages went out."""
        files = self.spool.pending(limit=max(1, self.settings.batch_max_messages))
        if not files:
            return 0
        batch: Round[SpoolFile] = Round(self.settings.batch_max_messages, self.settings.batch_max_bytes)
        for item in files:
            messages = self.spool.read(item)
            if messages is None:
                continue
            if not self._complete(messages):
                break  # a trimmed return not yet in the job cache: keep order, try again shortly
            if batch.add(item, item.size, messages):
                break
        for msg in batch.dropped:
            log.error("redis_syndic: spool message without destination dropped: %.200r", msg)
        if batch.by_mom:
            sealed = [(mom, *self._seal(mom, messages)) for mom, messages in batch.by_mom.items()]
            pipe = client.pipeline(transaction=False)
            for mom, _seq, raw in sealed:
                pipe.lpush(self.keys.uplink(mom), raw)
            pipe.execute()
            self.ledger.record_sent(sealed)  # kept until the MoM confirms it has them
        self.spool.remove(batch.taken)
        self.counters.inc("uplink_messages", batch.count)
        self.counters.inc("returns_forwarded", batch.kinds("ret"))
        self.counters.inc("events_forwarded", batch.kinds("ev"))
        return batch.count

    def _seal(self, mom: str, messages: list[dict[str, Any]]) -> tuple[int, bytes]:
        """One numbered, signed (and optionally encrypted) uplink item for ``mom``."""
        seq = self.ledger.next_seq(mom)
        body = encode_batch(self.dc, messages, seq=seq)
        if self.payload_key is not None:  # returns can carry secrets
            body = wrap(self.payload_key, body, batch_aad(self.dc))
        return seq, seal(body, self.signer)

    def reconcile(self, client: Any) -> None:
        """:meth:`reconcile_now` every heartbeat (or ``reconcile_interval`` when shorter)."""
        now = time.time()
        if self.reconciles.due(now):
            self.reconcile_now(client, now)

    def reconcile_now(self, client: Any, now: float) -> None:
        """Read each MoM's confirmation; forget what it has, push again what Redis lost."""
        for mom in self.ledger.sent_moms():
            raw = client.get(self.keys.confirm(mom, self.dc))
            confirm = None
            if raw is not None:
                try:
                    confirm = read_confirm(raw, self.verifier, mom, self.dc)
                except RejectedEntry as rej:
                    self._reject_confirm(mom, rej, raw)
            plan = self.planner.plan(mom, self.ledger.unconfirmed(mom), confirm, now)
            if plan.confirmed_upto:
                self.ledger.confirm_sent(mom, plan.confirmed_upto)
            items = self.ledger.sent_raw(mom, plan.resend)
            if plan.probe:
                seq, probe = self._seal(mom, [])
                self.ledger.record_sent([(mom, seq, probe)])
                items.append((seq, probe))
            if not items:
                continue
            pipe = client.pipeline(transaction=False)
            for _seq, item in items:
                pipe.lpush(self.keys.uplink(mom), item)
            pipe.execute()
            self.ledger.touch_sent(mom, [seq for seq, _ in items])
            if plan.resend:
                self.counters.inc("batches_resent", len(plan.resend))
                log.warning("redis_syndic: MoM %s never received uplink batch(es) %s of DC %s (lost in Redis); "
                            "sent again", mom, ranges(plan.resend), self.dc)
                self._fire({"dc": self.dc, "mom": mom, "seqs": plan.resend}, f"redis_syndic/uplink/{self.dc}/resent")
        dropped = self.ledger.expire_sent(now - self.settings.resend_window)
        if dropped:
            self.counters.inc("batches_unconfirmed_dropped", dropped)
            log.error("redis_syndic: DC %s dropped its copies of %d uplink batch(es) no MoM confirmed within "
                      "resend_window (%.0fs): if Redis lost them, their returns are lost", self.dc, dropped,
                      self.settings.resend_window)
            self._fire({"dc": self.dc, "batches": dropped}, f"redis_syndic/uplink/{self.dc}/dropped")

    def _reject_confirm(self, mom: str, rej: RejectedEntry, raw: bytes) -> None:
        Rejections(self.counters, self.deadletters, self._fire, self._rl, f"dc:{self.dc}").reject(
            rej, raw, {"what": "confirm", "mom": mom}, log_key=f"confirm:{mom}", entry_id=self.keys.confirm(mom, self.dc),
            msg="redis_syndic: rejected the confirmation of MoM %s on DC %s: %s "
                "(dead-lettered; unconfirmed batches are kept)", args=(mom, self.dc, rej))

    def _complete(self, messages: list[dict[str, Any]]) -> bool:
        """Replace trimmed returns by the whole return from the job cache (False: not there yet)."""
        for msg in messages:
            if not msg.get("trimmed"):
                continue
            full = self.cache.get_return(msg["jid"], msg["id"])
            decision = trimmed(msg, full, time.time())
            if decision == WAIT:
                return False
            if decision == FILL:
                msg["load"].update(full)
                del msg["trimmed"]
            else:
                log.error("redis_syndic: whole return of %s for job %s not found in the job cache; sending it trimmed",
                          msg["id"], msg["jid"])
        return True

    def watch_spool(self, force: bool = False) -> int | None:
        """Every heartbeat interval: spool depth gauge, and the growing/drained events."""
        now = time.monotonic()
        if not self.watches.due(now, force):
            return None
        depth = self.spool.depth()
        self.gauges.set("spool_depth", depth)
        change = self.spool_watch.observe(depth, now)
        self.gauges.set("spool_growing", 1 if self.spool_watch.growing else 0)
        if change == "growing":
            log.warning("redis_syndic: DC %s spool holds %d file(s) (spool_warn_depth %d): acks and returns are not "
                        "reaching Redis at %s fast enough; they are kept on disk and sent when it is reachable",
                        self.dc, depth, self.settings.spool_warn_depth, self.settings.redis.safe_url)
        elif change == "drained":
            log.warning("redis_syndic: DC %s spool drained: everything spooled reached Redis", self.dc)
        if change is not None:
            self._fire({"dc": self.dc, "spool_depth": depth, "spool_warn_depth": self.settings.spool_warn_depth},
                       f"redis_syndic/spool/{self.dc}/{change}")
        return depth

    def _fire(self, data: Mapping[str, Any], tag: str) -> None:
        if self.bus is None:
            return
        try:
            self.bus.fire(data, tag)
        except Exception as err:  # an operator event must never stop the uplink
            self._rl.log(logging.WARNING, "fire", "redis_syndic: cannot fire %s on the local bus (%s)", tag, err)

    def heartbeat(self, client: Any) -> None:
        now = time.time()
        if not self.heartbeats.due(now):
            return
        last = JobStream(client, self.keys.jobs, self.settings.stream_maxlen).last_id()
        cursor = self.cursor() or "0-0"
        lag = stream_lag(last, cursor)
        depth = self.spool.depth()
        minions = self.minion_count()
        self.gauges.set("stream_lag_seconds", lag)
        self.gauges.set("minion_count", minions)
        status = DcStatus(dc=self.dc, last_seen=now, cursor=cursor, stream_last_id=last, lag_seconds=lag,
                          spool_depth=depth, minion_count=minions, version=self.version,
                          master_id=self.settings.master_id, counters=self.counters.snapshot(),
                          spool_warn_depth=self.settings.spool_warn_depth, spool_growing=self.spool_watch.growing)
        pipe = client.pipeline(transaction=False)
        pipe.set(self.keys.status(self.dc), seal(status.encode(), self.signer))
        pipe.set(self.keys.dckey(self.dc), self.signer.public_pem)  # announced; trusted only once accepted
        pipe.sadd(self.keys.dcs, self.dc)
        pipe.execute()

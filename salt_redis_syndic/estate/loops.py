"""The estate loops: each DC publishes its roster and fingerprints, the MoM merges and compares.

DC side (``estate`` loop of a DC engine), every ``estate_interval``:

* scan the key directories, fold in "last seen" from the local bus, and when the roster
  changed append one signed delta to ``<ns>:roster:<dc>:deltas``;
* rewrite the signed snapshot ``<ns>:roster:<dc>`` only at start, when the MoM asks
  (``<ns>:resync:<dc>``) or after ``roster_stream_maxlen / 2`` deltas, so the stream always
  holds every delta since the snapshot;
* every ``drift_interval`` fingerprint ``file_roots`` / ``pillar_roots`` and the commits of
  the gitfs / git_pillar remotes the master uses; a changed listing is written whole (``<ns>:files:<dc>``), its digests go in the head;
* write the signed head ``<ns>:estate:<dc>`` (position, roster digest, file digests).

At steady state that is one small SET (and one GET of the resync flag) per interval.

MoM side (``estate`` loop of the MoM engine) reads every head, follows each DC's deltas,
reloads a snapshot when the epoch changed, a delta is missing or the digests disagree, and
keeps the merged roster and the drift report in ``<state_dir>/estate/`` for the runner.
It fires ``redis_syndic/roster/<dc>`` when a roster changes and ``redis_syndic/drift`` when a
DC starts or stops serving something else than the MoM.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from ..config import Settings
from ..errors import RejectedEntry
from ..runtime import Backoff, Counters, RateLimitedLog
from ..security.signing import Signer, Verifier
from ..state.deadletter import DeadLetters
from ..transport.connection import TRANSIENT, describe_error, make_client
from ..transport.keys import Keys
from ..transport.stream import JobStream
from ..wire.codec import pack
from ..wire.sealed import seal
from .drift import (
    Fingerprinter,
    Listing,
    compared_digests,
    digests,
    drift_report,
    in_sync,
)
from .gitrevs import GIT_KINDS
from .keycmd import KeyActions, SeenOrders, carry_out
from .records import (
    EstateHead,
    FileSet,
    RosterSnapshot,
    decode_delta,
    decode_fileset,
    decode_head,
    decode_snapshot,
    encode_delta,
    read_record,
)
from .roster import (
    Entry,
    Roster,
    RosterSource,
    RosterView,
    SeenClock,
    counts,
    diff,
    digest,
    pki_stamp,
    scan_pki,
)

log = logging.getLogger(__name__)

_RET_TAG = re.compile(r"^salt/job/[0-9]{20}[0-9A-Za-z_]*/ret/([^/]+)$")
_START_TAG = re.compile(r"^salt/minion/([^/]+)/start$")
RESYNC_TTL = 300
BAD_HEAD_REPORT_EVERY = 600.0  # seconds between two reports of the same bad head of a DC
FULL_SCAN_EVERY = 6  # ticks between full scans of pki_dir when its directories look unchanged


def seen_in_event(tag: str, data: Any) -> str | None:
    """The minion a master event shows alive: a return, a start, an accepted authentication."""
    match = _RET_TAG.match(tag) or _START_TAG.match(tag)
    if match:
        return match.group(1)
    if isinstance(data, Mapping) and isinstance(data.get("id"), str):
        if tag == "minion_start" or (tag == "salt/auth" and data.get("act") == "accept"):
            return data["id"]
    return None


class Bus(Protocol):
    def get(self, wait: float) -> tuple[str, dict[str, Any]] | None: ...


class FireBus(Protocol):
    def fire(self, data: Mapping[str, Any], tag: str) -> bool: ...


class MinionData(Protocol):
    def updated(self, minion: str) -> int | None: ...
    def grains(self, minion: str, names: tuple[str, ...]) -> dict[str, Any] | None: ...
    def forget(self, keep: set[str]) -> None: ...


# --------------------------------------------------------------------------------- DC side


class DcEstate:
    """The ``estate`` loop of a DC engine (see the module docstring)."""

    def __init__(self, settings: Settings, opts: Mapping[str, Any], signer: Signer, stop: threading.Event,
                 counters: Counters | None = None, bus: Callable[[], Bus] | None = None,
                 minion_data: Callable[[], MinionData] | None = None, *,
                 key_actions: Callable[[], KeyActions] | None = None, deadletters: DeadLetters | None = None,
                 fire: FireBus | None = None) -> None:
        assert settings.dc is not None
        self.settings = settings
        self.dc = settings.dc
        self.opts = opts
        self.pki_dir = str(opts.get("pki_dir") or "/etc/salt/pki/master")
        self.signer = signer
        self.stop = stop
        self.counters = counters or Counters()
        self.keys = Keys(settings.namespace)
        self.source = RosterSource()
        self.clock = SeenClock(settings.roster_seen_resolution)
        self.fingerprinter = Fingerprinter()
        self.file_digests: dict[str, dict[str, str]] = {}
        self._bus_factory = bus
        self._bus: Bus | None = None
        self._data_factory = minion_data
        self._data: MinionData | None = None
        self._seeded: set[str] = set()
        self._pki_stamp: tuple[int, ...] = ()
        self._quick_ticks = 0
        self._force_snapshot = True  # the first tick of a run always writes one
        self._force_files = True
        self._next_files = 0.0
        self._rl = RateLimitedLog(log)
        self.orders: KeyOrders | None = None
        if settings.key_management:
            self.orders = KeyOrders(settings, key_actions, deadletters, fire, self.counters)

    def run(self) -> None:
        client = make_client(self.settings.redis)
        backoff = Backoff(base=0.5, cap=10.0)
        while not self.stop.is_set():
            try:
                self.tick(client, time.time())
                if backoff.failing:
                    log.info("redis_syndic: DC %s estate records reach Redis again", self.dc)
                backoff.reset()
            except TRANSIENT as err:
                self._force_snapshot = self._force_files = True  # a delta may be lost: start the MoM afresh
                self._rl.log(logging.WARNING, "estate", "redis_syndic: cannot write the estate of DC %s to %s (%s); retrying",
                             self.dc, self.settings.redis.safe_url, describe_error(err))
                self.stop.wait(backoff.next())
                continue
            self.listen(self.settings.estate_interval)

    def listen(self, seconds: float) -> None:
        """Wait for the next tick, noting which minions the local bus shows alive meanwhile."""
        deadline = time.monotonic() + seconds
        if self._bus is None and self._bus_factory is not None:
            try:
                self._bus = self._bus_factory()
            except Exception as err:  # the roster still works without "last seen"; retried next tick  # noqa: BLE001
                self._rl.log(logging.WARNING, "bus", "redis_syndic: cannot listen on the local bus yet (%s); last seen "
                             "comes from the minion data cache meanwhile", err)
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._bus is None:
                self.stop.wait(left)
                return
            try:
                event = self._bus.get(wait=min(left, 0.5))
            except Exception as err:  # the master restarting: listen again next tick  # noqa: BLE001
                self._rl.log(logging.WARNING, "bus", "redis_syndic: lost the local bus (%s); listening again", err)
                self._bus = None
                continue
            if event is not None:
                minion = seen_in_event(*event)
                if minion is not None:
                    self.clock.note(minion, time.time())

    def minion_data(self) -> MinionData | None:
        if self._data is None and self._data_factory is not None:
            try:
                self._data = self._data_factory()
            except Exception as err:  # noqa: BLE001
                self._rl.log(logging.WARNING, "data", "redis_syndic: cannot read the minion data cache (%s)", err)
                self._data_factory = None
        return self._data

    def current(self) -> Roster:
        """The roster as it is now: key states, last seen, the configured grains.

        The key directories are listed again only when their modification times changed
        (and every ``FULL_SCAN_EVERY`` ticks, for filesystems with coarse timestamps); in
        between only the minions heard from since the last tick are looked at.
        """
        published = self.source.published
        dirty = self.clock.take_dirty()
        stamp = pki_stamp(self.pki_dir)
        full = (stamp != self._pki_stamp or bool(self.settings.roster_grains) or self.source.seq == 0
                or self._quick_ticks >= FULL_SCAN_EVERY)
        if not full:
            self._quick_ticks += 1
            moved = {m: Entry(e.state, seen, e.grains) for m in dirty if (e := published.get(m)) is not None
                     and (seen := self.clock.seen(m, e.seen)) != e.seen}
            return {**published, **moved} if moved else published
        self._pki_stamp, self._quick_ticks = stamp, 0
        states = scan_pki(self.pki_dir)
        data = self.minion_data()
        if data is not None:
            for minion in states.keys() - self._seeded:
                seeded = data.updated(minion)
                if seeded:
                    self.clock.note(minion, float(seeded))
            self._seeded = set(states)
        out: Roster = {}
        for minion, state in states.items():
            old = published.get(minion)
            grains = None
            if self.settings.roster_grains and data is not None and state == "accepted":
                grains = data.grains(minion, self.settings.roster_grains)
            out[minion] = Entry(state, self.clock.seen(minion, old.seen if old else None), grains)
        self.clock.forget(states)
        self.clock.take_dirty()
        if data is not None:
            data.forget(set(states))
        return out

    def tick(self, client: Any, now: float) -> None:
        if self.orders is not None:
            self.orders.run_pending(client, now)  # before the scan: the roster shows their effect at once
        pipe = client.pipeline(transaction=False)
        source = self.source
        delta = source.step(self.current())
        snapshot = self._force_snapshot or source.seq - source.snapshot_seq >= self.settings.roster_stream_maxlen // 2
        if delta is not None and not snapshot:  # a reader of the snapshot needs no delta up to it
            pipe.xadd(self.keys.roster_deltas(self.dc), {"r": seal(encode_delta(self.dc, delta), self.signer)},
                      maxlen=self.settings.roster_stream_maxlen, approximate=True)
            self.counters.inc("roster_deltas")
        if snapshot:
            snap = RosterSnapshot(self.dc, source.epoch, source.seq, source.published)
            pipe.set(self.keys.roster(self.dc), seal(snap.encode(), self.signer))
            pipe.sadd(self.keys.dcs, self.dc)  # the MoM finds DCs there (the heartbeat adds it too)
            source.snapshot_seq = source.seq
            self.counters.inc("roster_snapshots")
        if self.settings.drift_roots and (self._force_files or now >= self._next_files):
            self._next_files = now + self.settings.drift_interval
            listing = self.fingerprinter.listing(self.opts, self.settings.drift_roots)
            fresh = digests(listing)
            if fresh != self.file_digests or self._force_files:
                pipe.set(self.keys.files(self.dc), seal(FileSet(self.dc, now, listing).encode(), self.signer))
                if fresh != self.file_digests and self.file_digests:
                    log.info("redis_syndic: DC %s serves changed files now (%s)", self.dc, _changed_envs(self.file_digests, fresh))
                self.file_digests = fresh
        head = EstateHead(dc=self.dc, at=now, epoch=source.epoch, seq=source.seq, snapshot_seq=source.snapshot_seq,
                          digest=digest(source.published), counts=counts(source.published), files=self.file_digests,
                          seen_resolution=self.settings.roster_seen_resolution)
        pipe.set(self.keys.estate(self.dc), seal(head.encode(), self.signer))
        pipe.get(self.keys.resync(self.dc))
        results = pipe.execute()
        self._force_snapshot = self._force_files = False
        if results[-1]:
            log.info("redis_syndic: the MoM asked DC %s for a fresh roster snapshot", self.dc)
            client.delete(self.keys.resync(self.dc))
            self._force_snapshot = self._force_files = True
            self.tick(client, now)  # at once: the MoM's view of this DC is stale until then


class KeyOrders:
    """A DC's side of key management from the MoM: read, check, carry out, audit (see :mod:`keycmd`)."""

    def __init__(self, settings: Settings, actions: Callable[[], KeyActions] | None, deadletters: DeadLetters | None,
                 fire: FireBus | None, counters: Counters) -> None:
        assert settings.dc is not None
        self.settings = settings
        self.dc = settings.dc
        self.keys = Keys(settings.namespace)
        self.verifier = Verifier(settings.trusted_keys)
        self.seen = SeenOrders(os.path.join(estate_dir(settings), "keycmd.json"))
        self._actions_factory = actions
        self._actions: KeyActions | None = None
        self.deadletters = deadletters
        self.fire = fire
        self.counters = counters

    def run_pending(self, client: Any, now: float) -> None:
        stream = JobStream(client, self.keys.keycmd(self.dc), 1000)
        if not self.seen.cursor:
            # Orders sent before key management was turned on here are not carried out.
            self.seen.cursor = stream.last_id()
            self.seen.save(now)
        for entry_id, fields in stream.read(self.seen.cursor, count=100, block_ms=None):
            raw = fields.get(b"r", fields.get("r"))
            try:
                if self._actions is None:
                    if self._actions_factory is None:
                        raise RejectedEntry("unsupported", "this engine cannot change minion keys")
                    self._actions = self._actions_factory()
                cmd = carry_out(raw, self.dc, self.verifier, self.seen, self._actions, now, self.settings.clock_skew,
                                self.settings.max_entry_bytes)
                self.counters.inc("key_orders")
                self._fire({"dc": self.dc, "minion": cmd.minion, "action": cmd.action, "order": cmd.id, "by": cmd.by},
                           f"redis_syndic/key_order/{cmd.action}")
            except RejectedEntry as rej:
                self.counters.inc(f"rejected_{rej.reason}")
                log.error("redis_syndic: AUDIT refused key order %s on DC %s: %s (dead-lettered)", entry_id, self.dc, rej)
                if self.deadletters is not None:
                    self.deadletters.add(source=f"dc:{self.dc}", entry_id=entry_id, reason=rej.reason, detail=rej.detail,
                                         raw=fields)
                self._fire({"dc": self.dc, "entry_id": entry_id, "reason": rej.reason, "detail": rej.detail},
                           f"redis_syndic/rejected/{rej.reason}")
            except Exception as err:  # salt.key failed: reported, the next order still runs  # noqa: BLE001
                self.counters.inc("key_orders_failed")
                log.error("redis_syndic: AUDIT key order %s on DC %s failed: %s: %s", entry_id, self.dc,
                          err.__class__.__name__, err)
            self.seen.cursor = entry_id
            self.seen.save(now)

    def _fire(self, data: Mapping[str, Any], tag: str) -> None:
        if self.fire is not None:
            try:
                self.fire.fire(data, tag)
            except Exception as err:  # an event must never stop the loop  # noqa: BLE001
                log.warning("redis_syndic: cannot fire %s on the local bus (%s)", tag, err)


def _changed_envs(old: Mapping[str, Mapping[str, str]], new: Mapping[str, Mapping[str, str]]) -> str:
    return ", ".join(f"{kind}:{env}" for kind in sorted(set(old) | set(new))
                     for env in sorted(set(old.get(kind, {})) | set(new.get(kind, {})))
                     if old.get(kind, {}).get(env) != new.get(kind, {}).get(env))


# --------------------------------------------------------------------------------- MoM side


def estate_dir(settings: Settings) -> str:
    return os.path.join(settings.state_dir, "estate")


def _write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


@dataclass
class _DcState:
    view: RosterView = field(default_factory=RosterView)
    cursor: str = "0-0"
    head: EstateHead | None = None
    listing: Listing | None = None
    listing_for: dict[str, dict[str, str]] | None = None
    bad_head: tuple[str, float] = ("", 0.0)
    last_drift: dict[str, Any] | None = None
    resync_asked: float = 0.0
    rejected_ids: set[str] = field(default_factory=set)
    verified: tuple[str, int] = ("", -1)


class MomEstate:
    """The ``estate`` loop of the MoM engine (see the module docstring)."""

    def __init__(self, settings: Settings, opts: Mapping[str, Any], keyring: Any, bus: FireBus,
                 deadletters: DeadLetters | None, counters: Counters, stop: threading.Event) -> None:
        self.settings = settings
        self.opts = opts
        self.keyring = keyring
        self.bus = bus
        self.deadletters = deadletters
        self.counters = counters
        self.stop = stop
        self.keys = Keys(settings.namespace)
        self.dir = estate_dir(settings)
        self.dcs: dict[str, _DcState] = {}
        self.fingerprinter = Fingerprinter()
        self.own: Listing = {}
        self._next_own = 0.0
        self._drift_written = b""
        self._rl = RateLimitedLog(log)

    def run(self) -> None:
        client = make_client(self.settings.redis)
        backoff = Backoff(base=0.5, cap=10.0)
        while not self.stop.is_set():
            try:
                self.tick(client, time.time())
                backoff.reset()
            except TRANSIENT as err:
                self._rl.log(logging.WARNING, "estate", "redis_syndic: cannot read the DC estates at %s (%s); retrying",
                             self.settings.redis.safe_url, describe_error(err))
                self.stop.wait(backoff.next())
                continue
            self.stop.wait(self.settings.estate_interval)

    def tick(self, client: Any, now: float) -> None:
        self.keyring.maybe_reload()
        names = sorted(n.decode() if isinstance(n, bytes) else str(n) for n in client.smembers(self.keys.dcs))
        raws = client.mget([self.keys.estate(n) for n in names]) if names else []
        for dc, raw in zip(names, raws):
            if raw is None:
                continue
            state = self.dcs.setdefault(dc, _DcState())
            try:
                state.head = read_record(raw, self.keyring, dc, decode_head, self.settings.max_entry_bytes)
                state.bad_head = ("", 0.0)
            except RejectedEntry as rej:
                if rej.reason == "unknown_key":  # a DC whose key is not accepted yet: the collect loop says so
                    self._rl.log(logging.INFO, f"unknown:{dc}", "redis_syndic: estate of DC %s ignored until its key is "
                                 "accepted (salt-run redis_syndic.keys)", dc)
                elif state.bad_head[0] != rej.reason or now - state.bad_head[1] > BAD_HEAD_REPORT_EVERY:
                    # A DC rewrites its head every interval: report a bad one once, not every tick.
                    state.bad_head = (rej.reason, now)
                    self.reject(dc, "head", rej, raw)
                continue
            self.follow(client, dc, state, now)
        if self.settings.drift_roots:
            self.check_drift(client, now)

    # -- roster ------------------------------------------------------------------------------
    def follow(self, client: Any, dc: str, state: _DcState, now: float) -> None:
        head = state.head
        assert head is not None
        before = dict(state.view.minions)
        if head.epoch != state.view.epoch or head.seq < state.view.seq:
            self.reload(client, dc, state, now)
        elif head.seq > state.view.seq and (not self.read_deltas(client, dc, state) or state.view.seq < head.seq):
            self.reload(client, dc, state, now)
        view = state.view
        if view.epoch == head.epoch and view.seq == head.seq and state.verified != (view.epoch, view.seq):
            if view.digest() != head.digest:
                log.warning("redis_syndic: roster of DC %s differs from its digest at #%d; reloading its snapshot", dc, view.seq)
                self.reload(client, dc, state, now)
                view = state.view
            if view.epoch == head.epoch and view.seq == head.seq and view.digest() == head.digest:
                state.verified = (view.epoch, view.seq)  # checked once per position, not every tick
        if view.minions != before or not os.path.exists(self.roster_file(dc)):
            self.save_roster(dc, view, now, head.seen_resolution)
            self.announce(dc, before, view.minions)

    def read_deltas(self, client: Any, dc: str, state: _DcState) -> bool:
        """Apply the deltas after ``state.cursor``.  False if one is missing or from another run."""
        stream = JobStream(client, self.keys.roster_deltas(dc), self.settings.roster_stream_maxlen)
        while True:
            entries = stream.read(state.cursor, count=500, block_ms=None)
            if not entries:
                return True
            for entry_id, fields in entries:
                state.cursor = entry_id
                raw = fields.get(b"r", fields.get("r"))
                try:
                    record = read_record(raw, self.keyring, dc, decode_delta, self.settings.max_entry_bytes)
                except RejectedEntry as rej:
                    # Skipped, not fatal: a forged entry must not stall the roster.  Were it a
                    # damaged real delta, the gap it leaves triggers a reload.
                    if entry_id not in state.rejected_ids:
                        if len(state.rejected_ids) > 10_000:
                            state.rejected_ids.clear()
                        state.rejected_ids.add(entry_id)
                        self.reject(dc, f"roster delta {entry_id}", rej, fields)
                    continue
                if state.view.apply(record.delta) is False:
                    return False

    def reload(self, client: Any, dc: str, state: _DcState, now: float) -> None:
        """Rebuild ``dc``'s roster from its snapshot and every delta after it."""
        head = state.head
        assert head is not None
        self.counters.inc("roster_reloads")
        raw = client.get(self.keys.roster(dc))
        snap = None
        if raw is not None:
            try:
                snap = read_record(raw, self.keyring, dc, decode_snapshot, self.settings.max_entry_bytes)
            except RejectedEntry as rej:
                self.reject(dc, "roster snapshot", rej, raw)
        if snap is None or snap.epoch != head.epoch or snap.seq > head.seq:
            self.ask_resync(client, dc, state, now, "no snapshot of its current run")
            return
        view = RosterView()
        view.load(snap.epoch, snap.seq, snap.minions)
        state.view, state.cursor = view, "0-0"
        if not self.read_deltas(client, dc, state) or view.seq < head.seq:
            self.ask_resync(client, dc, state, now, f"deltas after #{snap.seq} are missing")
            return
        log.info("redis_syndic: roster of DC %s loaded: %d minion(s) at #%d", dc, len(view.minions), view.seq)

    def ask_resync(self, client: Any, dc: str, state: _DcState, now: float, why: str) -> None:
        if now - state.resync_asked < max(3 * self.settings.estate_interval, 5.0):
            return
        state.resync_asked = now
        log.info("redis_syndic: asking DC %s for a fresh roster snapshot (%s)", dc, why)
        client.set(self.keys.resync(dc), b"1", ex=RESYNC_TTL)

    def roster_file(self, dc: str) -> str:
        return os.path.join(self.dir, "roster", f"{dc}.mp")

    def save_roster(self, dc: str, view: RosterView, now: float, resolution: float) -> None:
        _write_atomic(self.roster_file(dc), pack({"dc": dc, "epoch": view.epoch, "seq": view.seq, "updated_at": now,
                                                  "seen_resolution": resolution,
                                                  "minions": {m: e.wire() for m, e in view.minions.items()}}))

    def announce(self, dc: str, before: Roster, after: Roster) -> None:
        changed, removed = diff(before, after)
        added = sorted(m for m in changed if m not in before)
        moved = sorted(m for m in changed if m in before and before[m].state != changed[m].state)
        if not (added or removed or moved):
            return
        log.info("redis_syndic: roster of DC %s: %d added, %d removed, %d changed key state",
                 dc, len(added), len(removed), len(moved))
        self.bus.fire({"dc": dc, "added": added[:1000], "removed": removed[:1000],
                       "state_changed": {m: after[m].state for m in moved[:1000]}, "counts": counts(after)},
                      f"redis_syndic/roster/{dc}")

    # -- drift -------------------------------------------------------------------------------
    def check_drift(self, client: Any, now: float) -> None:
        if now >= self._next_own:
            self._next_own = now + self.settings.drift_interval
            self.own = self.fingerprinter.listing(self.opts, self.settings.drift_roots)
        own_digests = digests(self.own)
        dc_digests: dict[str, dict[str, dict[str, str]]] = {}
        listings: dict[str, Listing | None] = {}
        compared = self.settings.drift_roots
        for dc, state in sorted(self.dcs.items()):
            if state.head is None or not state.head.files:
                continue
            files = compared_digests(state.head.files, own_digests, compared)
            dc_digests[dc] = files
            if all(files.get(k, {}) == own_digests.get(k, {}) for k in compared):
                listings[dc] = None
                continue
            if state.listing_for != state.head.files:  # the listing matches the head, all kinds
                self.fetch_listing(client, dc, state)
            listings[dc] = state.listing if state.listing_for == state.head.files else None
        report = drift_report(self.own, listings, dc_digests)
        for dc, row in report["dcs"].items():
            state = self.dcs[dc]
            if _pending(row) or row == state.last_drift:
                continue
            synced = in_sync(row)
            if not synced:
                log.warning("redis_syndic: DC %s serves other files than the MoM: %s", dc, _describe(row))
            elif state.last_drift is not None:
                log.info("redis_syndic: DC %s serves the same files as the MoM again", dc)
            if not synced or state.last_drift is not None:
                # Every new difference, and the return to sync: what a reactor or an operator acts on.
                self.bus.fire({"dc": dc, "in_sync": synced, "drift": row}, "redis_syndic/drift")
            state.last_drift = row
        data = pack({"checked_at": now, **report})
        if data != self._drift_written:
            _write_atomic(os.path.join(self.dir, "drift.mp"), data)
            self._drift_written = data

    def fetch_listing(self, client: Any, dc: str, state: _DcState) -> None:
        raw = client.get(self.keys.files(dc))
        if raw is None:
            return
        try:
            fileset = read_record(raw, self.keyring, dc, decode_fileset, self.settings.max_entry_bytes)
        except RejectedEntry as rej:
            self.reject(dc, "file listing", rej, raw)
            return
        state.listing = fileset.listing
        state.listing_for = digests(fileset.listing)

    def reject(self, dc: str, what: str, rej: RejectedEntry, raw: Any) -> None:
        self.counters.inc(f"rejected_{rej.reason}")
        log.error("redis_syndic: rejected the %s of DC %s: %s (dead-lettered)", what, dc, rej)
        if self.deadletters is not None:
            self.deadletters.add(source=f"mom:{self.settings.master_id}", entry_id="", reason=rej.reason,
                                 detail=f"{what} of DC {dc}: {rej.detail}", raw={"raw": raw} if isinstance(raw, bytes) else raw)
        self.bus.fire({"what": f"estate {what}", "dc": dc, "reason": rej.reason, "detail": rej.detail},
                      f"redis_syndic/rejected/{rej.reason}")


def _pending(row: Mapping[str, Any]) -> bool:
    """A DC's listing was not fetched yet: no verdict to announce."""
    return any(isinstance(v, dict) and v.get("differs") for envs in row.values() for v in envs.values())


def _describe(row: Mapping[str, Any]) -> str:
    parts = []
    for kind, envs in sorted(row.items()):
        for env, value in sorted(envs.items()):
            if value != "in sync" and kind in GIT_KINDS:
                remotes = [f"{r} {_short(v['mom'])} -> {_short(v['dc'])}" for r, v in value.get("changed", {}).items()]
                remotes += [f"{r} only on the DC" for r in value.get("only_on_dc", {})]
                remotes += [f"{r} missing on the DC" for r in value.get("missing_on_dc", {})]
                parts.append(f"{kind}:{env} ({', '.join(remotes[:5])}{'...' if len(remotes) > 5 else ''})")
            elif value != "in sync":
                files = [f for key in ("changed", "only_on_dc", "missing_on_dc") for f in value.get(key, [])]
                parts.append(f"{kind}:{env} ({', '.join(files[:5])}{'...' if len(files) > 5 else ''})")
    return "; ".join(parts)


def _short(sha: str) -> str:
    return sha[:12] if len(sha) >= 40 else sha

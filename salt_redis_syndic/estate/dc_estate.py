"""The DC side of the estate loop: roster, fingerprints and the signed head, written to Redis.

Every ``estate_interval``:

* scan the key directories, fold in "last seen" from the local bus, and when the roster
  changed append one signed delta to ``<ns>:roster:<dc>:deltas``;
* rewrite the signed snapshot ``<ns>:roster:<dc>`` only at start, when the MoM asks
  (``<ns>:resync:<dc>``) or after ``roster_stream_maxlen / 2`` deltas, so the stream always
  holds every delta since the snapshot;
* every ``drift_interval`` fingerprint ``file_roots`` / ``pillar_roots`` and the commits of
  the gitfs / git_pillar remotes the master uses; a changed listing is written whole
  (``<ns>:files:<dc>``), its digests go in the head;
* write the signed head ``<ns>:estate:<dc>`` (position, roster digest, file digests).

At steady state that is one small SET (and one GET of the resync flag) per interval.
:meth:`DcEstate.records` decides what to write; :meth:`DcEstate.tick` writes it in one pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from ..config import Settings
from ..runtime import Backoff, Counters, ListenBus, RateLimitedLog
from ..security.signing import Signer
from ..transport.connection import TRANSIENT, describe_error, make_client
from ..transport.keys import Keys
from ..wire.sealed import seal
from ..wire.tags import RET_TAG, START_TAG
from .drift import digests
from .drift_watch import ServedFiles
from .key_orders import KeyOrders
from .records import EstateHead, FileSet, RosterSnapshot, encode_delta
from .roster import (
    Entry,
    Roster,
    RosterSource,
    SeenClock,
    counts,
    digest,
    pki_stamp,
    scan_pki,
)

log = logging.getLogger(__name__)

FULL_SCAN_EVERY = 6  # ticks between full scans of pki_dir when its directories look unchanged


def seen_in_event(tag: str, data: Any) -> str | None:
    """The minion a master event shows alive: a return, a start, an accepted authentication."""
    match = RET_TAG.match(tag) or START_TAG.match(tag)
    if match:
        return match.group("minion")
    if isinstance(data, Mapping) and isinstance(data.get("id"), str):
        if tag == "minion_start" or (tag == "salt/auth" and data.get("act") == "accept"):
            return data["id"]
    return None


class MinionData(Protocol):
    def updated(self, minion: str) -> int | None: ...
    def grains(self, minion: str, names: tuple[str, ...]) -> dict[str, Any] | None: ...
    def forget(self, keep: set[str]) -> None: ...


@dataclass(frozen=True)
class Write:
    """One Redis write of a tick: ``xadd`` (a roster delta), ``set`` (a record) or ``sadd`` (the DC set)."""

    op: str
    key: str
    value: bytes | str


class DcEstate:
    """The ``estate`` loop of a DC engine (see the module docstring).

    ``bus`` and ``minion_data`` are factories: the master's bus and cache may not be up when
    the engine starts, they are opened (and reopened) when first needed.
    """

    def __init__(self, settings: Settings, opts: Mapping[str, Any], signer: Signer, stop: threading.Event,
                 counters: Counters | None = None, bus: Callable[[], ListenBus] | None = None,
                 minion_data: Callable[[], MinionData] | None = None, *,
                 orders: KeyOrders | None = None, files: ServedFiles | None = None) -> None:
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
        self.files = files or ServedFiles(opts, settings.drift_roots, settings.drift_interval)
        self.file_digests: dict[str, dict[str, str]] = {}
        self._bus_factory = bus
        self._bus: ListenBus | None = None
        self._data_factory = minion_data
        self._data: MinionData | None = None
        self._seeded: set[str] = set()
        self._pki_stamp: tuple[int, ...] = ()
        self._quick_ticks = 0
        self._force_snapshot = True  # the first tick of a run always writes one
        self._force_files = True
        self._rl = RateLimitedLog(log)
        self.orders = orders

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
        for write in self.records(now):
            if write.op == "xadd":
                pipe.xadd(write.key, {"r": write.value}, maxlen=self.settings.roster_stream_maxlen, approximate=True)
            elif write.op == "sadd":
                pipe.sadd(write.key, write.value)
            else:
                pipe.set(write.key, write.value)
        pipe.get(self.keys.resync(self.dc))
        results = pipe.execute()
        self.written()
        if results[-1]:
            log.info("redis_syndic: the MoM asked DC %s for a fresh roster snapshot", self.dc)
            client.delete(self.keys.resync(self.dc))
            self._force_snapshot = self._force_files = True
            self.tick(client, now)  # at once: the MoM's view of this DC is stale until then

    def written(self) -> None:
        """The records of a tick reached Redis: from now on a snapshot and the listing only when due."""
        self._force_snapshot = self._force_files = False

    def records(self, now: float) -> list[Write]:
        """The signed records this tick writes: a delta or a snapshot, the file listing when it changed, the head."""
        source = self.source
        delta = source.step(self.current())
        snapshot = self._force_snapshot or source.seq - source.snapshot_seq >= self.settings.roster_stream_maxlen // 2
        writes = []
        if delta is not None and not snapshot:  # a reader of the snapshot needs no delta up to it
            writes.append(Write("xadd", self.keys.roster_deltas(self.dc), seal(encode_delta(self.dc, delta), self.signer)))
            self.counters.inc("roster_deltas")
        if snapshot:
            snap = RosterSnapshot(self.dc, source.epoch, source.seq, source.published)
            writes.append(Write("set", self.keys.roster(self.dc), seal(snap.encode(), self.signer)))
            writes.append(Write("sadd", self.keys.dcs, self.dc))  # the MoM finds DCs there (the heartbeat adds it too)
            source.snapshot_seq = source.seq
            self.counters.inc("roster_snapshots")
        if self.files.roots and (self._force_files or self.files.due(now)):
            writes += self._file_records(now)
        head = EstateHead(dc=self.dc, at=now, epoch=source.epoch, seq=source.seq, snapshot_seq=source.snapshot_seq,
                          digest=digest(source.published), counts=counts(source.published), files=self.file_digests,
                          seen_resolution=self.settings.roster_seen_resolution)
        writes.append(Write("set", self.keys.estate(self.dc), seal(head.encode(), self.signer)))
        return writes

    def _file_records(self, now: float) -> list[Write]:
        listing = self.files.refresh(now)
        fresh = digests(listing)
        if fresh == self.file_digests and not self._force_files:
            return []
        if fresh != self.file_digests and self.file_digests:
            log.info("redis_syndic: DC %s serves changed files now (%s)", self.dc, _changed_envs(self.file_digests, fresh))
        self.file_digests = fresh
        return [Write("set", self.keys.files(self.dc), seal(FileSet(self.dc, now, listing).encode(), self.signer))]


def _changed_envs(old: Mapping[str, Mapping[str, str]], new: Mapping[str, Mapping[str, str]]) -> str:
    return ", ".join(f"{kind}:{env}" for kind in sorted(set(old) | set(new))
                     for env in sorted(set(old.get(kind, {})) | set(new.get(kind, {})))
                     if old.get(kind, {}).get(env) != new.get(kind, {}).get(env))


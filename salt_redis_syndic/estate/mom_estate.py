"""The MoM side of the estate loop: every DC's head read and verified, rosters followed, drift compared.

Every ``estate_interval`` the loop reads every head, follows each DC's deltas, reloads a
snapshot when the epoch changed, a delta is missing or the digests disagree, and keeps the
merged roster and the drift report in ``<state_dir>/estate/`` (:class:`EstateStore`) for the
runner.  It fires ``redis_syndic/roster/<dc>`` when a roster changes and ``redis_syndic/drift``
when a DC starts or stops serving something else than the MoM (:func:`drift_news` decides).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..config import Settings
from ..errors import RejectedEntry
from ..runtime import Backoff, Counters, FireBus, RateLimitedLog
from ..state.deadletter import DeadLetters
from ..state.rejections import Rejections
from ..transport.connection import TRANSIENT, describe_error, make_client
from ..transport.keys import Keys
from ..transport.stream import JobStream
from ..wire.status import registered_dcs
from .drift import Listing, compared_digests, digests, drift_report
from .drift_watch import ServedFiles, drift_news
from .keymirror import KeyMirror
from .records import (
    EstateHead,
    decode_delta,
    decode_fileset,
    decode_head,
    decode_snapshot,
    read_record,
)
from .roster import Roster, RosterView, counts, diff
from .store import EstateStore, estate_dir

log = logging.getLogger(__name__)

RESYNC_TTL = 300
BAD_HEAD_REPORT_EVERY = 600.0  # seconds between two reports of the same bad head of a DC


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


def roster_step(head: EstateHead, view: RosterView) -> str:
    """What following a DC takes: ``reload`` (another run, or behind the snapshot), ``deltas`` or ``none``."""
    if head.epoch != view.epoch or head.seq < view.seq:
        return "reload"
    return "deltas" if head.seq > view.seq else "none"


class MomEstate:
    """The ``estate`` loop of the MoM engine (see the module docstring)."""

    def __init__(self, settings: Settings, opts: Mapping[str, Any], keyring: Any, bus: FireBus,
                 deadletters: DeadLetters | None, counters: Counters, stop: threading.Event, *,
                 store: EstateStore | None = None, own: ServedFiles | None = None,
                 mirror: KeyMirror | None = None) -> None:
        self.mirror = mirror  # DC minions in this master's key store (estate.keymirror)
        self.settings = settings
        self.opts = opts
        self.keyring = keyring
        self.bus = bus
        self.deadletters = deadletters
        self.counters = counters
        self.stop = stop
        self.keys = Keys(settings.namespace)
        self.store = store or EstateStore(estate_dir(settings))
        self.dcs: dict[str, _DcState] = {}
        self.own = own or ServedFiles(opts, settings.drift_roots, settings.drift_interval)
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
        names = registered_dcs(client, self.keys, self.counters, self._rl)
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
        if self.mirror is not None:
            self.sync_mirror()
        if self.settings.drift_roots:
            self.check_drift(client, now)

    def sync_mirror(self) -> None:
        """Mirror the accepted minions of every DC whose roster is loaded (never fatal)."""
        assert self.mirror is not None
        rosters = {dc: {m: e.state for m, e in st.view.minions.items()} for dc, st in self.dcs.items() if st.view.epoch}
        try:
            self.mirror.sync(rosters)
        except Exception as err:  # a key store error must not stop the roster  # noqa: BLE001
            self._rl.log(logging.ERROR, "mirror", "redis_syndic: cannot update the mirrored minion keys: %s", err)

    # -- roster ------------------------------------------------------------------------------
    def follow(self, client: Any, dc: str, state: _DcState, now: float) -> None:
        head = state.head
        assert head is not None
        before = dict(state.view.minions)
        step = roster_step(head, state.view)
        if step == "reload" or (step == "deltas" and (not self.read_deltas(client, dc, state) or state.view.seq < head.seq)):
            self.reload(client, dc, state, now)
        view = state.view
        if view.epoch == head.epoch and view.seq == head.seq and state.verified != (view.epoch, view.seq):
            if view.digest() != head.digest:
                log.warning("redis_syndic: roster of DC %s differs from its digest at #%d; reloading its snapshot", dc, view.seq)
                self.reload(client, dc, state, now)
                view = state.view
            if view.epoch == head.epoch and view.seq == head.seq and view.digest() == head.digest:
                state.verified = (view.epoch, view.seq)  # checked once per position, not every tick
        if view.minions != before or not self.store.has_roster(dc):
            self.store.save_roster(dc, view, now, head.seen_resolution)
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
        if self.own.due(now):
            self.own.refresh(now)
        own_digests = digests(self.own.current)
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
        report = drift_report(self.own.current, listings, dc_digests)
        for news in drift_news(report["dcs"], {dc: state.last_drift for dc, state in self.dcs.items()}):
            if not news.in_sync:
                log.warning("redis_syndic: DC %s serves other files than the MoM: %s", news.dc, news.describe())
            elif news.known:
                log.info("redis_syndic: DC %s serves the same files as the MoM again", news.dc)
            if news.announce:
                self.bus.fire({"dc": news.dc, "in_sync": news.in_sync, "drift": news.row}, "redis_syndic/drift")
            self.dcs[news.dc].last_drift = dict(news.row)
        self.store.save_drift(report, now)

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
        Rejections(self.counters, self.deadletters, self.bus.fire, self._rl, f"mom:{self.settings.master_id}").reject(
            rej, raw, {"what": f"estate {what}", "dc": dc}, log_key=f"reject:{dc}:{what}:{rej.reason}",
            detail=f"{what} of DC {dc}: {rej.detail}",
            msg="redis_syndic: rejected the %s of DC %s: %s (dead-lettered)", args=(what, dc, rej))

"""Per-jid release barrier: the MoM CLI learns the complete expected-minion set early.

Salt's CLI on a MoM (``order_masters: True``) extends the set of minions it waits for with
every ``syndic/<dc>/.../new`` event, and stops as soon as every expected minion returned and
``syndic_wait`` passed.  With ``syndic_wait: 0`` it would stop after the first DC's returns if
a second DC's list came later.  So the MoM holds the returns of a jid until every *live* DC
acknowledged it (or ``ack_wait`` passed), announces all the lists first, then stores returns.

Batch mode (``salt -b``) publishes several sub-jobs under one jid, one after another: each
new sub-job opens a new round (the live DCs must acknowledge it before returns are stored
again), and each DC's ack of each sub-job is announced on its own, with that sub-job's
minions: that is what the CLI's iterator for that sub-batch waits for.

This module is pure bookkeeping (no I/O): it answers with actions for the caller to execute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Announce:
    """Tell the CLI which minions ``dc`` targeted for ``jid`` (fire event, store_minions).

    ``sub``: the sub-job whose minions to announce (None: all of them, merged).
    """

    jid: str
    dc: str
    sub: str | None = None


@dataclass(frozen=True)
class Store(Generic[T]):
    """Store a return now."""

    item: T


@dataclass(frozen=True)
class Abandon(Generic[T]):
    """Give up on a held return: its DC never acknowledged the job within ``hold_max``."""

    item: T


@dataclass(frozen=True)
class Released:
    """Every list of ``jid`` is out (only reported by a barrier built with ``report_release``)."""

    jid: str


@dataclass(frozen=True)
class Overdue:
    """``jid`` was released without acks from these live DCs."""

    jid: str
    dcs: tuple[str, ...]


Action = Announce | Store | Abandon | Overdue | Released


@dataclass
class _Job(Generic[T]):
    expected: set[str]
    deadline: float
    acked: set[str] = field(default_factory=set)
    more: set[str] = field(default_factory=set)  # middle masters whose list is still growing
    announced: set[str] = field(default_factory=set)
    released: bool = False
    held: dict[str, list[T]] = field(default_factory=dict)
    held_since: dict[str, float] = field(default_factory=dict)
    touched: float = 0.0
    # Sub-jobs (batch mode): the ones published, the current round's, and (dc, sub) acked/announced.
    subs: set[str | None] = field(default_factory=set)
    round: str | None = None
    acked_subs: set[tuple[str, str | None]] = field(default_factory=set)
    announced_subs: set[tuple[str, str | None]] = field(default_factory=set)


class ReleaseBarrier(Generic[T]):
    def __init__(self, ack_wait: float, forget_after: float = 600.0, hold_max: float = 600.0,
                 report_release: bool = False) -> None:
        self.report_release = report_release
        self.ack_wait = ack_wait
        self.forget_after = forget_after
        self.hold_max = hold_max
        self._jobs: dict[str, _Job[T]] = {}

    def _job(self, jid: str, live_dcs: set[str], now: float, acked: set[str] | None = None) -> _Job[T]:
        job = self._jobs.get(jid)
        if job is None:
            job = _Job(expected=set(live_dcs), deadline=now + self.ack_wait)
            # Acks recorded before a MoM restart count; they are announced again (idempotent).
            for dc in acked or ():
                job.acked.add(dc)
                job.acked_subs.add((dc, None))
            self._jobs[jid] = job
        job.touched = now
        return job

    def knows(self, jid: str) -> bool:
        """True once ``jid`` has state here (its acks recorded before a restart are then moot)."""
        return jid in self._jobs

    def published(self, jid: str, live_dcs: set[str], now: float, sub: str | None = None) -> list[Action]:
        """The MoM published ``jid`` (sub-job ``sub``): wait for the DCs alive right now (none: released now).

        A new sub-job of a jid seen before (the next sub-batch of a batch) opens a new round.
        """
        known = jid in self._jobs
        job = self._job(jid, live_dcs, now)
        if known and job.subs and sub not in job.subs:
            job.expected = set(live_dcs)
            job.acked = {dc for dc, s in job.acked_subs if s == sub or s is None}
            job.deadline = now + self.ack_wait
            job.released = False
        job.subs.add(sub)
        job.round = sub
        return self._release(jid, job) if not job.expected and not job.released else []

    def ack(self, jid: str, dc: str, live_dcs: set[str], now: float, acked: set[str] | None = None,
            more: bool = False, sub: str | None = None) -> list[Action]:
        """``more``: a middle master's first ack; its list is complete at its next ack without ``more``.

        ``sub``: the sub-job acknowledged (None: the whole jid, as DCs before sub-jobs ack).
        """
        job = self._job(jid, live_dcs, now, acked)
        job.acked_subs.add((dc, sub))
        if sub is None or sub == job.round or not job.subs:
            job.acked.add(dc)  # an ack of an earlier round is announced but does not close this one
        if more and dc not in job.announced:
            job.more.add(dc)
        elif not more:
            job.more.discard(dc)
        if job.released:
            return self._announce(jid, job, dc, sub)
        if self._ready(job):
            return self._release(jid, job)
        return []

    def is_announced(self, jid: str, dc: str) -> bool:
        job = self._jobs.get(jid)
        return job is not None and dc in job.announced

    @staticmethod
    def _ready(job: _Job[T]) -> bool:
        return job.expected <= job.acked and not job.more

    def add_return(self, jid: str, dc: str, item: T, live_dcs: set[str], now: float, acked: set[str] | None = None) -> list[Action]:
        job = self._job(jid, live_dcs, now, acked)
        if job.released and dc in job.announced:
            return [Store(item)]
        job.held.setdefault(dc, []).append(item)
        job.held_since.setdefault(dc, now)
        if not job.released and self._ready(job):
            return self._release(jid, job)
        return []

    def tick(self, now: float) -> list[Action]:
        """Release jobs whose deadline passed; abandon returns held too long; forget idle jobs."""
        actions: list[Action] = []
        for jid, job in list(self._jobs.items()):
            for dc, since in list(job.held_since.items()):
                if now - since > self.hold_max:
                    actions.extend(Abandon(item) for item in job.held.pop(dc, []))
                    del job.held_since[dc]
            if not job.released and now >= job.deadline:
                missing = tuple(sorted(job.expected - job.acked))
                actions.extend(self._release(jid, job))
                if missing:
                    actions.append(Overdue(jid, missing))
            elif job.released and not job.held and now - job.touched > self.forget_after:
                del self._jobs[jid]
        return actions

    def held_count(self) -> int:
        return sum(len(items) for job in self._jobs.values() for items in job.held.values())

    def _release(self, jid: str, job: _Job[T]) -> list[Action]:
        job.released = True
        actions: list[Action] = []
        for dc, sub in sorted(job.acked_subs, key=lambda p: (p[0], p[1] or "")):
            actions.extend(self._announce(jid, job, dc, sub))
        for dc in sorted(job.held):  # a DC announced in an earlier round: the CLI knows its minions
            if dc in job.announced:
                job.held_since.pop(dc, None)
                actions.extend(Store(item) for item in job.held.pop(dc))
        # Every list goes out before any return: the CLI must know all it waits for first.
        actions.sort(key=lambda a: not isinstance(a, Announce))
        if self.report_release:
            actions.insert(sum(1 for a in actions if isinstance(a, Announce)), Released(jid))
        return actions

    def _announce(self, jid: str, job: _Job[T], dc: str, sub: str | None = None) -> list[Action]:
        if (dc, sub) in job.announced_subs:
            return []
        job.announced_subs.add((dc, sub))
        job.announced.add(dc)
        job.held_since.pop(dc, None)
        return [Announce(jid, dc, sub)] + [Store(item) for item in job.held.pop(dc, [])]

"""Uplink confirmations: the MoM says which numbered DC batches it has; the DC re-sends the gaps.

Why: Redis may lose writes it acknowledged (a restart without persistence, ``appendfsync
everysec``, a Sentinel failover before replication).  A DC numbers its batches per MoM and
keeps each pushed batch (see :class:`~salt_redis_syndic.state.ledger.DcLedger`) until the MoM
confirms it.  Batches to one MoM are consumed in push order, so when the MoM has seen batch
``n`` but never batch ``m < n``, batch ``m`` was lost in Redis and is pushed again; when the MoM
has seen nothing newer, the DC pushes an empty numbered *probe* that makes a gap visible.
Every sink on the MoM is idempotent, so a batch pushed twice is stored once.

The confirmation is signed by the MoM and verified by the DC: a forged one could only make a
DC forget copies it would otherwise re-send, but nothing from Redis is trusted unverified.
The record and its reader (``read_confirm``) are in ``wire/confirm.py``; the decisions are here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..wire.confirm import MAX_TAKEN, Confirm

# ----------------------------------------------------------------------------- MoM side

WRITE_EVERY = 1.0  # seconds between two writes of the confirmations that changed
REWRITE_EVERY = 5.0  # seconds between two writes of every confirmation


@dataclass
class _DcSeqs:
    done_upto: int
    max_seen: int
    taken: set[int] = field(default_factory=set)  # above done_upto: in progress or done
    done: set[int] = field(default_factory=set)  # above done_upto: done, waiting for the gap below
    dirty: bool = True


class UplinkTracker:
    """Which numbered batches of each DC this MoM has taken and finished (its confirmations)."""

    def __init__(self, mom: str, saved: dict[str, tuple[int, int]] | None = None) -> None:
        self.mom = mom
        self._dcs = {dc: _DcSeqs(done, seen) for dc, (done, seen) in (saved or {}).items()}
        self._next_write = self._next_rewrite = 0.0

    def taken(self, dc: str, seq: int) -> None:
        state = self._dcs.get(dc)
        if state is None:  # first batch ever seen from this DC: nothing before it is ours to ask for
            state = self._dcs[dc] = _DcSeqs(done_upto=seq - 1, max_seen=seq)
        if seq > state.done_upto:
            state.taken.add(seq)
        state.max_seen = max(state.max_seen, seq)
        state.dirty = True

    def done(self, dc: str, seq: int) -> None:
        state = self._dcs.get(dc)
        if state is None or seq <= state.done_upto:
            return
        state.done.add(seq)
        while state.done_upto + 1 in state.done:
            state.done_upto += 1
            state.done.discard(state.done_upto)
            state.taken.discard(state.done_upto)
        state.dirty = True

    def confirms(self, now: float | None = None, all_dcs: bool = False) -> list[Confirm]:
        """Confirmations that changed since the last call (or every one with ``all_dcs``)."""
        now = time.time() if now is None else now
        out = []
        for dc, state in sorted(self._dcs.items()):
            if state.dirty or all_dcs:
                state.dirty = False
                out.append(Confirm(self.mom, dc, state.done_upto, state.max_seen,
                                   tuple(sorted(state.taken)[:MAX_TAKEN]), now))
        return out

    def due(self, now: float, force: bool = False) -> list[Confirm]:
        """The confirmations to write now: those that changed, at most once a second (now with
        ``force``); every one every ``REWRITE_EVERY`` seconds, which restores one Redis lost."""
        if now < self._next_write and not force:
            return []
        self._next_write = now + WRITE_EVERY
        rewrite = now >= self._next_rewrite
        if rewrite:
            self._next_rewrite = now + REWRITE_EVERY
        return self.confirms(now, all_dcs=rewrite)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {dc: (s.done_upto, s.max_seen) for dc, s in self._dcs.items()}


# ------------------------------------------------------------------------------ DC side


@dataclass(frozen=True)
class ResendPlan:
    confirmed_upto: int  # forget every batch up to this one
    resend: list[int]  # lost in Redis: push again, oldest first
    probe: bool  # the MoM has seen none of our newest batches for a while: make a gap visible


class ResendPlanner:
    """Decides, from the MoM's latest confirmation, which unconfirmed batches to push again.

    A batch is pushed again at most once per ``interval`` of the *MoM's* clock (the ``at`` of
    successive confirmations), so a MoM that is down (its confirmation frozen) gets no storm of
    copies; local ``sent_at`` times only decide whether a batch is old enough to worry about.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._resent_under: dict[tuple[str, int], float] = {}
        self._last_probe: dict[str, float] = {}

    def plan(self, mom: str, unconfirmed: list[tuple[int, float]], confirm: Confirm | None, now: float) -> ResendPlan:
        if confirm is None:
            return ResendPlan(0, [], False)
        taken = set(confirm.taken)
        resend, waiting = [], False
        for seq, sent_at in unconfirmed:
            if seq <= confirm.done_upto or seq in taken or now - sent_at < self.interval:
                continue
            if seq < confirm.max_seen:
                if confirm.at - self._resent_under.get((mom, seq), float("-inf")) >= self.interval:
                    resend.append(seq)
                    self._resent_under[(mom, seq)] = confirm.at
            else:
                waiting = True
        for key in [k for k in self._resent_under if k[0] == mom and k[1] <= confirm.done_upto]:
            del self._resent_under[key]
        probe = waiting and now - self._last_probe.get(mom, float("-inf")) >= self.interval
        if probe:
            self._last_probe[mom] = now
        return ResendPlan(confirm.done_upto, resend, probe)


def ranges(seqs: list[int]) -> str:
    """``1-3,7`` for [1, 2, 3, 7]: log lines stay short when many batches were lost."""
    out: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if out and out[-1][1] == seq - 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in out)

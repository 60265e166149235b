"""Which DCs the MoM counts live, what changed since the last look, and what a new job waits for.

The MoM reads every DC's signed status record (its heartbeat) about once a second.  A DC is
live while its last heartbeat is at most ``dc_timeout`` old.  From one look at the records this
module decides the changes to announce (``redis_syndic/dc/<dc>/up`` and ``.../down``, a spool
reaching its alarm threshold and draining again), the gauges to set, and which DCs a job
published now waits for.

Pure: the caller reads Redis and decodes the records (``wire/status.read_status``), records
when a DC was first seen in its ledger, then logs (:meth:`note`) and fires (:meth:`event`)
each change this answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..jobs.reconcile import DcView
from ..wire.status import DcStatus
from ..wire.tags import job_event_tag


@dataclass(frozen=True)
class DcUp:
    dc: str

    def note(self) -> tuple[int, str]:
        return logging.INFO, f"DC {self.dc} is up"

    def event(self) -> tuple[dict[str, Any], str]:
        return {"dc": self.dc, "state": "up"}, f"redis_syndic/dc/{self.dc}/up"


@dataclass(frozen=True)
class DcDown:
    """``dc`` stopped sending heartbeats (its last one is older than ``dc_timeout``)."""

    dc: str

    def note(self) -> tuple[int, str]:
        return logging.WARNING, f"DC {self.dc} stopped sending heartbeats (down)"

    def event(self) -> tuple[dict[str, Any], str]:
        return {"dc": self.dc, "state": "down"}, f"redis_syndic/dc/{self.dc}/down"


@dataclass(frozen=True)
class SpoolGrowing:
    """``dc``'s spool reached its threshold: its returns are delayed (once per episode)."""

    dc: str
    depth: int
    warn_depth: int

    def note(self) -> tuple[int, str]:
        return logging.WARNING, (f"DC {self.dc} spool holds {self.depth} file(s) (threshold {self.warn_depth}): "
                                 "its returns are delayed")

    def event(self) -> tuple[dict[str, Any], str]:
        return ({"dc": self.dc, "spool_depth": self.depth, "spool_warn_depth": self.warn_depth},
                f"redis_syndic/dc/{self.dc}/spool_growing")


@dataclass(frozen=True)
class SpoolDrained:
    dc: str

    def note(self) -> tuple[int, str]:
        return logging.INFO, f"DC {self.dc} spool drained"

    def event(self) -> tuple[dict[str, Any], str]:
        return {"dc": self.dc, "spool_depth": 0}, f"redis_syndic/dc/{self.dc}/spool_drained"


Change = DcUp | DcDown | SpoolGrowing | SpoolDrained


@dataclass(frozen=True)
class Look:
    """The outcome of one look at the status records.

    ``changes``: to announce, in order (spool alarms first, by DC name, then ups, then downs).
    ``ages``: seconds since each DC's last heartbeat (the DCs with a valid record).
    ``first_seen``: live DCs never seen before by this process (the caller asks its ledger
    when each was first seen and tells :meth:`Liveness.note_first_seen`).
    """

    changes: list[Change]
    ages: dict[str, float]
    first_seen: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobDcs:
    """The DCs a job published now concerns: those it waits for, and those it names in vain."""

    wait_for: set[str]
    unknown: list[str]  # addressed, but never sent a heartbeat (a typo?)
    down: list[str]  # known (and addressed) but not live: the CLI does not wait for them

    def notices(self, jid: str) -> list[tuple[str, dict[str, Any], str]]:
        """``(warning, event data, tag)`` naming the DCs ``jid`` will not hear from now."""
        out = []
        if self.unknown:
            out.append((f"job {jid} is addressed to DC(s) {', '.join(self.unknown)} that never sent a heartbeat (typo?)",
                        {"jid": jid, "dcs": self.unknown}, job_event_tag(jid, "unknown_dcs")))
        if self.down:  # named, not silently missing: the CLI will not wait for these DCs
            out.append((f"job {jid} published while DC(s) {', '.join(self.down)} are down: their minions run it "
                        "when they are back (within job_ttl); the CLI does not wait for them",
                        {"jid": jid, "dcs": self.down}, job_event_tag(jid, "dc_down")))
        return out


class Liveness:
    """The MoM's view of its DCs, updated by :meth:`look`."""

    def __init__(self, dc_timeout: float) -> None:
        self.dc_timeout = dc_timeout
        self.live: set[str] = set()  # heartbeat within dc_timeout
        self.known: set[str] = set()  # registered in the DC set, live or not
        self.statuses: dict[str, DcStatus] = {}  # the last valid status of each DC seen live
        self.first_seen: dict[str, float] = {}
        self.spool_growing: set[str] = set()

    def look(self, now: float, names: Iterable[str], statuses: Mapping[str, DcStatus]) -> Look:
        """``names``: every registered DC; ``statuses``: the valid status record of some of them."""
        names = sorted(names)
        changes: list[Change] = []
        ages: dict[str, float] = {}
        live: set[str] = set()
        for name in names:
            status = statuses.get(name)
            if status is None:
                continue
            ages[name] = age = max(0.0, now - status.last_seen)
            if age <= self.dc_timeout:
                live.add(name)
                changes += self._spool(name, status)
                self.statuses[name] = status
        new = [dc for dc in sorted(live) if dc not in self.first_seen]
        changes += [DcUp(dc) for dc in sorted(live - self.live)]
        changes += [DcDown(dc) for dc in sorted(self.live - live)]
        self.live = live
        self.known = set(names)
        return Look(changes, ages, new)

    def note_first_seen(self, dc: str, at: float) -> None:
        self.first_seen[dc] = at

    def _spool(self, dc: str, status: DcStatus) -> list[Change]:
        growing = status.spool_growing or 0 < status.spool_warn_depth <= status.spool_depth
        if growing and dc not in self.spool_growing:
            self.spool_growing.add(dc)
            return [SpoolGrowing(dc, status.spool_depth, status.spool_warn_depth)]
        if dc in self.spool_growing and not status.spool_growing and status.spool_depth == 0:
            self.spool_growing.discard(dc)
            return [SpoolDrained(dc)]
        return []

    def views(self) -> dict[str, DcView]:
        """What the job reconciler needs of each live DC (those with a status and a first-seen time)."""
        return {dc: DcView(self.statuses[dc].cursor, self.statuses[dc].spool_depth, self.first_seen[dc])
                for dc in self.live if dc in self.statuses and dc in self.first_seen}

    def for_job(self, addressed: Iterable[str] | None) -> JobDcs:
        """``addressed``: the DCs a job is addressed to (None: every DC)."""
        if addressed is None:
            return JobDcs(set(self.live), [], sorted(self.known - self.live))
        only = set(addressed)
        return JobDcs(self.live & only, sorted(only - self.known), sorted((self.known & only) - self.live))

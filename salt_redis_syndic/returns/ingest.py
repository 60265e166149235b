"""What the MoM does with each message of a DC's uplink batch, and when a batch is finished.

An uplink batch (already read and verified by ``wire/uplink.read_batch``) carries acks,
returns and forwarded events.  Acks and returns go to the release barrier
(:mod:`.barrier`), which answers with actions; a forwarded event is fired on the MoM's bus
under a tag naming its DC.  A batch stays in the in-flight list until every return it carried
was stored or abandoned: :class:`Batch` counts them, so it is finished exactly once.

Which DCs a jid waits for: the live ones, once the MoM knows it published the jid.  A jid
this MoM never published (another MoM's, mirrored here with ``mirror_returns``) waits for no
DC: only its sender, so each DC's list is announced as it comes.

Pure: the caller reads the ledger (:class:`LedgerFacts`), records the ack, and applies the
actions (``Collector.execute``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..events.forwarding import may_fire_original, up_tag
from ..wire.uplink import Ack, Event, Return
from .barrier import Action, Announce, ReleaseBarrier


@dataclass
class Batch:
    """An uplink item being processed: removed from the in-flight list when nothing is left."""

    raw: bytes
    dc: str = ""
    seq: int | None = None  # the DC's number for this batch, once its signature is verified
    remaining: int = 0  # returns held or being stored
    finished: bool = False

    def settle(self) -> bool:
        """One of its returns was stored or abandoned: True when that was the last one."""
        self.remaining -= 1
        return self.remaining == 0

    def finish(self) -> bool:
        """True the first time only: its last return may be stored while its batch is still read."""
        if self.finished:
            return False
        self.finished = True
        return True


@dataclass
class HeldReturn:
    """A return the barrier holds (or a store to try again), with the batch that carried it."""

    ret: Return
    batch: Batch = field(repr=False)
    attempts: int = 0  # stores tried that the job cache did not keep


@dataclass(frozen=True)
class LedgerFacts:
    """What the MoM's ledger said about a message's jid before the message was recorded.

    ``acked_before``: the DCs that acknowledged the jid before the barrier knew it (a MoM
    restart); None when the barrier knows the jid (the ledger is then not read).
    ``published``: this MoM published the jid (read only with ``acked_before``).
    ``extended``: minions a middle master's ack extension added (``Ack.ext``).
    """

    acked_before: set[str] | None = None
    published: bool = False
    extended: bool = False


class Ingest:
    """The decisions for acks and returns; the barrier's state lives in ``barrier``."""

    def __init__(self, barrier: ReleaseBarrier[HeldReturn]) -> None:
        self.barrier = barrier

    def needs_acks_before(self, jid: str) -> bool:
        """Whether the caller must read the acks recorded before a restart (:class:`LedgerFacts`)."""
        return not self.barrier.knows(jid)

    def message(self, msg: Ack | Return, batch: Batch, facts: LedgerFacts, live_dcs: set[str],
                now: float) -> list[Action]:
        """The barrier's actions for one ack or return of ``batch``."""
        acked = facts.acked_before
        live = live_dcs if acked is None or facts.published else {msg.dc}
        if isinstance(msg, Ack) and msg.ext:
            # A middle master learned more of its minions (the DCs below it acked).
            actions: list[Action] = []
            if facts.extended and self.barrier.is_announced(msg.jid, msg.dc):
                actions.append(Announce(msg.jid, msg.dc))  # the CLI extends its expected set
            return actions + self.barrier.ack(msg.jid, msg.dc, live, now, acked, more=msg.more)
        if isinstance(msg, Ack):
            # One ack per sub-job (batch mode); the DC's minions are the union of them.
            return self.barrier.ack(msg.jid, msg.dc, live, now, acked, more=msg.more, sub=msg.sub or None)
        batch.remaining += 1
        return self.barrier.add_return(msg.jid, msg.dc, HeldReturn(msg, batch), live, now, acked)


def forwarded(event: Event, original_tag: bool) -> list[tuple[dict[str, Any], str]]:
    """``(data, tag)`` to fire for a DC's forwarded event: under a tag naming the DC, and under
    its own tag when ``original_tag`` (``forward_events_original_tag``) and that tag is allowed."""
    out = [({"dc": event.dc, "tag": event.tag, "data": event.data}, up_tag(event.dc, event.tag))]
    if original_tag and may_fire_original(event.tag):
        out.append(({**event.data, "redis_syndic_dc": event.dc}, event.tag))
    return out

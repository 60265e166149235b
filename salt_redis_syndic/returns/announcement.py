"""What the MoM tells its CLI about a DC's minions for a job, from the acks in its ledger.

Salt's CLI on a MoM extends the set of minions it waits for with every
``syndic/<dc>/salt/job/<jid>/new`` event; the job cache keeps one minion list per DC.  When
the release barrier (:mod:`.barrier`) says ``Announce``, the DC's acks decide what is said:

* the DC ran the job: the ``new`` event with the minions of the sub-job announced (a batch's
  sub-batch: the CLI iterator of that sub-batch waits for exactly those), and the DC's whole
  list (every sub-job merged) for the job cache;
* it did not (``expired``, ``failed``, ``rejected``...): ``redis_syndic/job/<jid>/<status>/<dc>``.

When a middle master's barrier says ``Released``, every minion its DCs targeted goes up.

Pure: the caller reads the ledger's acks and fires, stores and counts what this answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..wire.subjobs import EXTENSION
from ..wire.tags import dc_new_tag, job_event_tag

AckRow = tuple[str, list[str]]  # (status, minions)


@dataclass(frozen=True)
class ListOut:
    """The DC ran the job: fire ``data`` under ``tag`` first, then keep ``cache_minions`` (if any)."""

    data: dict[str, Any]
    tag: str
    cache_minions: list[str]


@dataclass(frozen=True)
class NotRun:
    """The DC did not run the job (``status`` says why): counted and reported, nothing announced."""

    status: str
    data: dict[str, Any]
    tag: str


def announcement(jid: str, dc: str, sub: str | None, merged: AckRow | None,
                 rows: Mapping[str, AckRow]) -> ListOut | NotRun:
    """``merged``: the DC's acks of ``jid`` merged (None: no ack); ``rows``: its ack per sub-job.

    ``sub``: the sub-job to announce (None, or the extension row: the DC's whole list).
    """
    merged = merged or ("unknown", [])
    status, minions = merged
    if sub is not None and sub != EXTENSION:
        status, minions = rows.get(sub, merged)
    if status == "published":
        return ListOut({"jid": jid, "minions": minions, "missing": [], "syndic_id": dc}, dc_new_tag(dc, jid),
                       list(merged[1]))
    return NotRun(status, {"jid": jid, "dc": dc, "status": status}, job_event_tag(jid, status, dc))


def released_minions(acks: Mapping[str, AckRow]) -> list[str]:
    """Every minion the DCs that ran the job targeted (``acks``: per DC, merged)."""
    return sorted({m for status, ms in acks.values() if status == "published" for m in ms})

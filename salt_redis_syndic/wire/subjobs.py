"""Sub-jobs: several signed jobs under one jid (Salt's batch mode), each run exactly once.

Salt's batch CLI (``salt -b N``, ``--static``, ``--batch-safe-limit``) publishes every
sub-batch under the SAME jid, each with its own minion list (``tgt_type: list``).  So the
unit a DC dedupes on is not the jid but ``(jid, identity)``, where the identity is a digest
of the signed minion-bound load (tgt, tgt_type, fun, arg, ...):

* a replayed stream entry, or the MoM re-sending the same signed entry, has the same load,
  hence the same identity: it never runs twice;
* the next sub-batch of a batch differs in ``tgt``: a new identity, run once on its minions;
* a tampered entry never gets this far (the signature is checked before the load is read).

On the MoM, a DC acknowledges each sub-job; the acks of one ``(jid, DC)`` are merged (a
return is accepted for a minion in the union of their lists), and the reconciler reasons
per sub-job.  Ledger rows written before sub-jobs existed have the identity ``""``
(:data:`WHOLE_JID`): it stands for every sub-job of its jid, so nothing recorded before an
upgrade ever runs again.

Pure: no I/O, no Salt.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterable, Mapping

from .codec import pack, unpack_local

WHOLE_JID = ""  # a row from before sub-jobs (or an old DC's ack): covers every sub-job of the jid
EXTENSION = "~ext"  # the MoM's row for a middle master's ack extensions (three tiers): acks no sub-job
SUB_RE = re.compile(r"^[0-9a-f]{32}\Z", re.ASCII)


def _canonical(value: Any) -> Any:
    """Maps with sorted keys, all the way down: equal loads pack to equal bytes."""
    if isinstance(value, Mapping):
        return [[_canonical(k), _canonical(v)] for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))]
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def job_identity(load: Mapping[str, Any]) -> str:
    """The sub-job identity of a minion-bound load: 32 hex digits of its canonical SHA-256.

    The load goes through msgpack first, as it does on its way to the DC, so the MoM (which
    holds the load before packing) and the DC (which holds it after) compute the same digest.
    """
    body = pack(_canonical(unpack_local(pack(dict(load)))))
    return hashlib.sha256(b"redis_syndic/subjob/v1\0" + body).hexdigest()[:32]



def covers(acked_subs: Iterable[str], sub: str) -> bool:
    """True if a DC whose acks carry ``acked_subs`` acknowledged sub-job ``sub`` (a whole-jid ack covers all)."""
    subs = set(acked_subs)
    return sub in subs or WHOLE_JID in subs


def merge_acks(rows: Iterable[tuple[str, list[str]]]) -> tuple[str, list[str]]:
    """One DC's acks of one jid ``[(status, minions), ...]`` (one per sub-job) as one ``(status, minions)``.

    The DC ran the job if it ran any sub-job: ``published`` with the union of the published
    minion lists.  Otherwise the first status (oldest ack) says why it did not.
    """
    statuses: list[str] = []
    minions: set[str] = set()
    for status, names in rows:
        statuses.append(status)
        if status == "published":
            minions.update(names)
    if not statuses:
        return "unknown", []
    return ("published" if "published" in statuses else statuses[0]), sorted(minions)


def saved_load_is(saved: Mapping[str, Any], load: Mapping[str, Any]) -> bool:
    """True if the load a master saved for a jid is the one of this sub-job.

    A DC master keeps one saved load per jid, overwritten by each sub-job it publishes; after
    a crash between claiming and settling a sub-job, the saved load tells whether that
    sub-job was the last one published.  Sub-jobs of one batch differ by their target (the
    minion list), which the master saves unchanged.
    """
    if not saved:
        return False
    return all(_normal(saved.get(key, default)) == _normal(load.get(key, default))
               for key, default in (("tgt", None), ("tgt_type", "glob")))


def _normal(value: Any) -> Any:
    return _canonical(unpack_local(pack(value)))

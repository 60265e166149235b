"""The MoM's own answer to ``saltutil.find_job`` for DC minions a job was never sent to.

With mirrored keys (:mod:`salt_redis_syndic.estate.keymirror`) the MoM's publish reply lists every matching DC
minion, also for a job addressed to some DCs only (``metadata: {redis_syndic: {dcs: [...]}}``).
The CLI then waits for minions of the other DCs, and after ``timeout`` asks them
``saltutil.find_job``.  Salt's CLI drops a minion from the expected set when its find_job
return has ``retcode > 0`` (``LocalClient.get_iter_returns``): the MoM engine fires exactly
that, on the MoM bus only, for each asked minion whose mirror names a DC the job was not
addressed to.  No minion ran anything; nothing is written to the job cache.

This module is pure: it decides; the publisher fires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..wire.tags import ret_tag

FIND_JOB = "saltutil.find_job"


def asked(load: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    """``(asked jid, minions)`` for a ``saltutil.find_job`` published to a list of minions."""
    if load.get("fun") != FIND_JOB or load.get("tgt_type") != "list":
        return None
    args = load.get("arg")
    if not isinstance(args, (list, tuple)) or not args or not isinstance(args[0], (str, int)):
        return None
    tgt = load.get("tgt")
    if isinstance(tgt, str):
        minions = [m for m in tgt.split(",") if m]
    elif isinstance(tgt, (list, tuple)):
        minions = [m for m in tgt if isinstance(m, str) and m]
    else:
        return None
    return str(args[0]), minions


def unaddressed(minions: Iterable[str], owners: Mapping[str, str | None], addressed: Iterable[str]) -> dict[str, str]:
    """``{minion: its DC}`` for the asked minions mirrored for a DC not in ``addressed``.

    A minion with no mirror (a MoM minion, or not known) is left to Salt.
    """
    to = set(addressed)
    return {m: dc for m in minions if (dc := owners.get(m)) is not None and dc not in to}


def untargeted(minions: Iterable[str], owners: Mapping[str, str | None],
               acks: Mapping[str, tuple[str, list[str]]]) -> dict[str, str]:
    """``{minion: its DC}`` for the asked minions whose DC acknowledged the job without running it there.

    The MoM matches a target on names only (it has no grains or pillar of DC minions), so for
    ``-C '* and not G@dc:east'`` it waits for east's minions too; east's ack says whom east
    targeted. A minion its DC did not target (or a DC that refused, expired or skipped the job)
    does not run the job. A DC that has not acknowledged yet is left to Salt.
    """
    out = {}
    for minion in minions:
        dc = owners.get(minion)
        if dc is None or dc not in acks:
            continue
        status, targeted = acks[dc]
        if status != "published" or minion not in targeted:
            out[minion] = dc
    return out


def not_addressed_why(asked_jid: str, minion: str, dc: str, addressed: Iterable[str]) -> str:
    return (f"job {asked_jid} is addressed to DC(s) {', '.join(sorted(addressed))}; "
            f"{minion} is a minion of DC {dc} and never received it")


def not_targeted_why(asked_jid: str, minion: str, dc: str, status: str) -> str:
    if status == "published":
        return f"DC {dc} ran job {asked_jid} without targeting {minion}"
    return f"job {asked_jid} was not run on DC {dc} ({status})"


def answer(find_jid: str, asked_jid: str, minion: str, why: str) -> tuple[str, dict[str, Any]]:
    """The ``(tag, data)`` telling the waiting CLI that ``minion`` does not run ``asked_jid``."""
    return (ret_tag(find_jid, minion),
            {"id": minion, "jid": find_jid, "fun": FIND_JOB, "fun_args": [asked_jid], "return": {}, "retcode": 1,
             "success": False, "redis_syndic": why})

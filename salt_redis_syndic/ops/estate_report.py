"""What the runner shows of the estate: the merged roster, drift, and who a job left out.

Reads only what the MoM's ``estate`` loop saved in ``<state_dir>/estate/`` after verifying
it (the MoM's own disk, not Redis), so the runner needs no key and answers at once.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import Any

from ..config import Settings
from ..estate.roster import STATES, Entry
from ..wire.codec import unpack_local
from ..estate.store import estate_dir


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def load_rosters(settings: Settings) -> dict[str, dict[str, Any]]:
    """``{dc: {"updated_at": t, "minions": {id: Entry}}}`` as the MoM's estate loop last saved them."""
    base = os.path.join(estate_dir(settings), "roster")
    try:
        names = sorted(n for n in os.listdir(base) if n.endswith(".mp"))
    except FileNotFoundError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        with open(os.path.join(base, name), "rb") as fh:
            doc = unpack_local(fh.read())
        out[doc["dc"]] = {"updated_at": doc["updated_at"], "seen_resolution": float(doc.get("seen_resolution", 60.0)),
                          "minions": {m: Entry.from_wire(w) for m, w in doc["minions"].items()}}
    return out


def minions_view(settings: Settings, dc: str | None = None, state: str | None = None) -> dict[str, Any]:
    """Every minion below the MoM: ``{id: {dc, state, last_seen[, grains]}}``.

    A minion id held by several DCs (the same key accepted twice, a real mistake) is listed
    as a list of rows, one per DC.
    """
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    out: dict[str, Any] = {}
    for name, roster in sorted(load_rosters(settings).items()):
        if dc is not None and name != dc:
            continue
        for minion, entry in sorted(roster["minions"].items()):
            if state is not None and entry.state != state:
                continue
            row: dict[str, Any] = {"dc": name, "state": entry.state, "last_seen": _iso(entry.seen)}
            if entry.grains is not None:
                row["grains"] = entry.grains
            if minion in out:
                out[minion] = (out[minion] if isinstance(out[minion], list) else [out[minion]]) + [row]
            else:
                out[minion] = row
    return out


def drift_view(settings: Settings) -> dict[str, Any]:
    """Per DC, kind and saltenv: "in sync" or the files that differ from what the MoM serves."""
    try:
        with open(os.path.join(estate_dir(settings), "drift.mp"), "rb") as fh:
            doc = unpack_local(fh.read())
    except FileNotFoundError:
        return {"error": "no drift report yet: is the MoM's redis_syndic engine running with drift_roots set?"}
    doc["checked_seconds_ago"] = round(max(0.0, time.time() - doc.pop("checked_at")), 1)
    return doc


def job_estate(rosters: dict[str, dict[str, Any]], dc: str, targeted: list[str], missing: list[str],
               started_at: float | None) -> dict[str, Any]:
    """What the roster adds to a job's report for one DC.

    ``not_targeted``: accepted minions of the DC the job did not target; ``down``: targeted
    minions that did not return and that their DC has not heard from since before the job
    (the DC's ``roster_seen_resolution`` earlier, the precision of its "last seen").
    """
    roster = rosters.get(dc)
    if roster is None:
        return {}
    resolution = roster["seen_resolution"]
    minions: dict[str, Entry] = roster["minions"]
    accepted = {m for m, e in minions.items() if e.state == "accepted"}
    down = []
    for minion in missing:
        seen = minions[minion].seen if minion in minions else None
        if started_at is not None and (seen is None or seen < started_at - max(resolution, 1.0)):
            down.append(minion)
    return {"known_minions": len(accepted), "not_targeted": sorted(accepted - set(targeted)), "down": sorted(down)}

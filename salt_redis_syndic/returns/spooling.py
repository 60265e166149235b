"""The returner's side of the uplink: which EventReturn events become spool messages.

``returns_to_spool`` runs inside Salt's EventReturn process (``returner.event_return``): it only
filters events and builds messages for the DC's spool; the DC engine ships them
(:mod:`.shipper`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

from ..config import Settings, destinations
from ..wire.tags import RET_TAG
from ..wire.uplink import is_trimmed


def returns_to_spool(events: Iterable[Mapping[str, Any]], settings: Settings,
                     origin_of: Callable[[str], str | None] = lambda jid: None) -> list[dict[str, Any]]:
    """Uplink messages for the returns of bridged jobs among EventReturn ``events``.

    A return belongs to a bridged job when the DC ledger knows its jid (``origin_of`` names
    the MoM it came from; the DC engine records the jid before publishing it).  The
    ``master_id`` Salt puts in a return is only a fallback: Salt drops it from jobs that ran
    from the minion's state queue (``queue=True``).
    """
    out = []
    for event in events:
        match = RET_TAG.match(str(event.get("tag", "")))
        data = event.get("data")
        if not match or not isinstance(data, dict):
            continue
        jid, minion = match.group("jid", "minion")
        mom = origin_of(jid) or data.get("master_id")
        if not isinstance(mom, str) or not mom or mom == settings.master_id:
            continue
        load = {k: v for k, v in data.items() if k != "_stamp"}
        for dest in destinations(settings, mom):
            msg: dict[str, Any] = {"t": "ret", "jid": jid, "dc": settings.dc, "id": minion, "load": load,
                                   "mom": dest, "spooled_at": time.time()}
            if is_trimmed(data):
                msg["trimmed"] = True
            out.append(msg)
    return out

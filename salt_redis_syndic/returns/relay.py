"""Three tiers: a middle master is a DC of the MoM above and a MoM of the DCs below.

It runs two ``redis_syndic`` engine instances (``engine_module: redis_syndic``): the DC side
(the ``redis_syndic`` block, ``relay: true``) reads the upper job stream and publishes locally;
the MoM side (its own ``namespace``, ``state_dir`` and ``signing_key``) sees that local publish
on the bus like any other and sends the job further down.  Returns from below are stored on
the middle master, fire ``salt/job/<jid>/ret/<id>`` there, and its returner sends them up
because the DC ledger names the upper MoM as the job's origin.

The upper MoM accepts a return only for a minion its DC acknowledged, and its CLI waits only
for minions it was told about.  So the DC side's first ack carries ``more`` (the list grows),
and the MoM side announces what the DCs below targeted: ``syndic/<dc>/salt/job/<jid>/new``
per DC and ``redis_syndic/job/<jid>/released`` with every targeted minion once all lists are
out.  The returner turns those (for jobs that came from above) into ack extensions (``ext``),
the last one without ``more``.  Jobs never travel up: the DC side only reads the upper
stream, the MoM side only writes the lower one.

Pure: no I/O, no Salt.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

from ..config import Settings
from ..wire.codec import MINION_RE
from ..wire.tags import DC_NEW_TAG, RELEASED_TAG
from ..wire.uplink import Ack


def ack_extensions(events: Iterable[Mapping[str, Any]], settings: Settings,
                   origin_of: Callable[[str], str | None]) -> list[dict[str, Any]]:
    """Spool messages extending this middle DC's acks upward with the minions below it."""
    if not settings.relay:
        return []
    out = []
    for event in events:
        tag = str(event.get("tag", ""))
        data = event.get("data")
        new, released = DC_NEW_TAG.match(tag), RELEASED_TAG.match(tag)
        match = new or released
        if not match or not isinstance(data, dict):
            continue
        jid = match.group("jid")
        origin = origin_of(jid)
        if not origin or origin == settings.master_id:
            continue  # a job of this master's own CLI: nothing to tell above
        minions = [m for m in data.get("minions") or [] if isinstance(m, str) and MINION_RE.match(m)]
        assert settings.dc is not None
        ack = Ack(jid, settings.dc, "published", minions=sorted(minions), ext=True, more=bool(new))
        out.append({**ack.to_wire(), "mom": origin, "spooled_at": time.time()})
    return out

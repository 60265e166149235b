"""What the ``redis_syndic`` runner shows: DC status records and per-job completeness."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

from ..config import Settings, dc_keys_dir
from ..errors import RejectedEntry
from ..runtime import RateLimitedLog, jid_time
from ..security.dckeys import DcKeyring
from ..state.ledger import ledger_file
from ..state.mom_ledger import MomLedger
from ..transport.connection import make_client
from ..transport.keys import Keys
from ..wire.status import read_status, registered_dcs

log = logging.getLogger(__name__)

# Counters of the DC status record shown as named fields of ``redis_syndic.status``.
STATUS_COUNTERS = ("jobs_published", "jobs_expired", "jobs_rejected", "jobs_duplicate", "jobs_failed", "jobs_refused",
                   "returns_forwarded", "reconnects")


def dc_status(settings: Settings, now: float | None = None) -> dict[str, dict[str, Any]]:
    """One row per DC that ever sent a heartbeat: alive or not, with its age and figures.

    ``uplink_backlog`` is the MoM's uplink list (batches of every DC not yet collected);
    ``spool_depth`` is the DC's own backlog on disk.
    """
    now = time.time() if now is None else now
    client = make_client(settings.redis)
    keys = Keys(settings.namespace)
    names = registered_dcs(client, keys, rl=RateLimitedLog(log))
    keyring = DcKeyring(dc_keys_dir(settings), dict(settings.dc_keys))
    out: dict[str, dict[str, Any]] = {}
    backlog = client.llen(keys.uplink(settings.master_id))
    for name, raw in zip(names, client.mget([keys.status(n) for n in names]) if names else []):
        if raw is None:
            out[name] = {"alive": False, "last_seen": None}
            continue
        try:
            st = read_status(raw, keyring, name)  # only what the DC's accepted key signed
        except RejectedEntry as rej:
            hint = " (salt-run redis_syndic.keys)" if rej.reason == "unknown_key" else ""
            out[name] = {"alive": False, "error": f"{rej}{hint}"}
            continue
        age = round(max(0.0, now - st.last_seen), 1)
        row: dict[str, Any] = {
            "alive": age <= settings.dc_timeout,
            "last_seen": datetime.fromtimestamp(st.last_seen, timezone.utc).isoformat(timespec="seconds"),
            "last_seen_seconds_ago": age,
            "stream_lag_seconds": round(st.lag_seconds, 3),
            "uplink_backlog": backlog,
            "spool_depth": st.spool_depth,
            "spool_growing": st.spool_growing,
            "minion_count": st.minion_count,
            "version": st.version,
            "master_id": st.master_id,
        }
        row.update({name_: st.counters.get(name_, 0) for name_ in STATUS_COUNTERS})
        row["rejected_by_reason"] = {k[len("rejected_"):]: v for k, v in sorted(st.counters.items())
                                     if k.startswith("rejected_")}
        out[name] = row
    return out


def job_report(settings: Settings, jid: str, utc_jid: bool = False) -> dict[str, Any]:
    """Per DC: acknowledged or not, targeted minions, returned, missing.

    With the estate roster, also how many minions the DC has, which it did not target and
    which of the missing ones look down (see :func:`estate_report.job_estate`).
    """
    from .estate_report import job_estate, load_rosters

    rosters = load_rosters(settings)
    ledger = MomLedger(ledger_file(settings.state_dir, "mom"))
    try:
        acks = ledger.acks(jid)
        stored = ledger.stored(jid)
    finally:
        ledger.close()
    dcs = set(acks) | set(dc_status(settings))
    report: dict[str, Any] = {}
    for dc in sorted(dcs):
        if dc not in acks:
            report[dc] = {"acknowledged": False}
            continue
        status, minions = acks[dc]
        returned = sorted(m for m in minions if stored.get(m) == dc)
        report[dc] = {
            "acknowledged": True,
            "status": status,
            "targeted": minions,
            "returned": returned,
            "missing": sorted(set(minions) - set(returned)),
        }
        report[dc].update(job_estate(rosters, dc, minions, report[dc]["missing"], jid_time(jid, utc_jid)))
    return report

"""The MoM's job cache: returns written the way a native return is (event + cache), and read back.

Salt's ``salt.utils.job.store_job`` does what the master does with a minion's return; the
job cache's loaders (``master_job_cache``, ``local_cache`` by default) are Salt's own.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import salt.minion
import salt.utils.job

from ..errors import RedisSyndicError
from ..runtime import jid_time


class JobCache:
    """The master job cache, written the way a native return is (event + cache)."""

    def __init__(self, opts: Mapping[str, Any]) -> None:
        self._opts = opts
        # Copied once: a dict(opts) per return (Salt's opts are an OptsDict) was 12% of the MoM
        # collector's samples under bench/simulate_dcs.py.  store_job only reads it.
        self._plain_opts = dict(opts)
        self._mminion = salt.minion.MasterMinion(dict(opts), states=False, rend=False, matcher=False)
        self._cache = opts.get("master_job_cache", "local_cache")

    def store_job(self, load: dict[str, Any], bus: Any) -> None:
        """Fires ``salt/job/<jid>/ret/<id>`` and writes the job cache, like a minion return."""
        salt.utils.job.store_job(self._plain_opts, load, event=bus.salt_event, mminion=self._mminion)

    def store_minions(self, jid: str, minions: list[str], dc: str) -> None:
        salt.utils.job.store_minions(self._plain_opts, jid, minions, mminion=self._mminion, syndic_id=dc)

    def note_dc_minions(self, jid: str, dc: str, minions: list[str]) -> None:
        """Record in the MoM job load which DC each minion belongs to.

        ``jobs.list_job`` shows a job's ``Metadata``; we add ``redis_syndic_dcs: {dc: [...]}``
        to it, keeping any metadata the user passed (top level or in ``kwargs``).
        """
        load = dict(self.get_load(jid))
        if not load:
            return
        load.pop("Minions", None)  # computed by get_load from the minion lists, not stored
        meta = load.get("metadata")
        if not isinstance(meta, dict):
            kw_meta = (load.get("kwargs") or {}).get("metadata") if isinstance(load.get("kwargs"), dict) else None
            meta = dict(kw_meta) if isinstance(kw_meta, dict) else {}
        dcs = dict(meta.get("redis_syndic_dcs") or {})
        dcs[dc] = sorted(minions)
        meta = {**meta, "redis_syndic_dcs": dcs}
        load["metadata"] = meta
        self._mminion.returners[f"{self._cache}.save_load"](jid, load)

    def get_load(self, jid: str) -> dict[str, Any]:
        return self._mminion.returners[f"{self._cache}.get_load"](jid) or {}

    def recent_loads(self, since: float) -> list[tuple[str, float, dict[str, Any]]]:
        """``(jid, published at, saved load)`` of jobs published after ``since``, oldest first.

        Walks the ``local_cache`` tree (``jobs/<xx>/<hash>/jid``), skipping directories not
        modified since ``since``; other job caches are not supported (RedisSyndicError).
        """
        if self._cache != "local_cache":
            raise RedisSyndicError(f"master_job_cache {self._cache!r}: only local_cache can be scanned for recovery")
        base = os.path.join(self._opts["cachedir"], "jobs")
        found = []
        for top in _scandir(base):
            for entry in _scandir(top.path):
                try:
                    if entry.stat().st_mtime < since - 1:
                        continue
                    with open(os.path.join(entry.path, "jid"), encoding="utf-8") as fh:
                        jid = fh.read().strip()
                except OSError:
                    continue
                at = jid_time(jid, bool(self._opts.get("utc_jid")))
                if at is None or at < since:
                    continue
                load = self.get_load(jid)
                if load:
                    found.append((jid, at, load))
        return sorted(found, key=lambda item: item[0])

    def get_return(self, jid: str, minion: str) -> dict[str, Any] | None:
        """The whole stored return of one minion (events over max_event_size are trimmed)."""
        data = self._mminion.returners[f"{self._cache}.get_jid"](jid) or {}
        ret = data.get(minion)
        return ret if isinstance(ret, dict) and "return" in ret else None


def _scandir(path: str) -> list[os.DirEntry[str]]:
    try:
        return [e for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []

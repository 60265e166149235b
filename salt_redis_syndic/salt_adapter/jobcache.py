"""The MoM's job cache: returns written the way a native return is (event + cache), and checked.

Salt's ``salt.utils.job.store_job`` does what the master does with a minion's return; the
job cache's returners (``master_job_cache``, ``local_cache`` by default) are Salt's own.  But
``store_job`` logs what the returner raises and goes on, and ``local_cache.returner`` creates
``<jid>/<minion>/`` before it writes ``return.p``: killed in between (or out of disk space in
the write), the directory stays without a return, and every later store of that return is
refused as a "Duplicate return".  A store the MoM confirms to a DC must have happened, so:

* the returner's call is watched: what it raises fails the store (:class:`StoreFailed`);
* with ``local_cache`` the return is read back from ``return.p``; a minion's directory
  without a readable ``return.p`` is completed here, with the returner's own path logic and
  record (``return``, ``retcode``, ``success``; ``out`` in ``out.p``), written atomically.
  Removing the directory instead would not do: a write that ran out of space leaves the
  atomic writer's temporary file in it;
* another ``master_job_cache`` cannot be read back cheaply: it is trusted if it did not raise.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import salt.minion
import salt.payload
import salt.returners.local_cache as local_cache
import salt.utils.atomicfile
import salt.utils.jid
import salt.utils.job

from ..errors import RedisSyndicError, StoreFailed
from ..runtime import jid_time

log = logging.getLogger(__name__)
RECORD_KEYS = ("return", "retcode", "success")  # what local_cache.returner keeps in return.p


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
        """Fires ``salt/job/<jid>/ret/<id>`` and writes the job cache, like a minion return; then checks it.

        ``bus`` None: no event (a store tried again: the first attempt fired it).  Raises
        :class:`StoreFailed` when the job cache did not keep the return (retryable), or when
        Salt refused the load (final: ``store_job`` ignores a load without ``return``, ``jid``
        or ``id``, or with an invalid minion id).
        """
        call = _ReturnerCall()
        mminion = _Watching(self._mminion, f"{self._cache}.returner", call)
        event = bus.salt_event if bus is not None else None
        what = f"return of {load.get('id')!r} for job {load.get('jid')!r}"
        if salt.utils.job.store_job(self._plain_opts, load, event=event, mminion=mminion) is False:
            raise StoreFailed(f"Salt refused the {what} (incomplete load or invalid minion id)", retryable=False)
        if not call.ran:
            return  # job_cache off, or ext_job_cache: Salt keeps returns elsewhere, nothing to check here
        raised = f"{call.error.__class__.__name__}: {call.error}" if call.error is not None else ""
        if self._cache == "local_cache":
            self._check_local(load, f"{what}{f' ({raised})' if raised else ''}")
        elif raised:
            raise StoreFailed(f"master_job_cache {self._cache!r} failed to store the {what}: {raised}")

    def _check_local(self, load: dict[str, Any], what: str) -> None:
        """The return must be readable in ``return.p``; a minion directory without one is completed."""
        jid_dir = salt.utils.jid.jid_dir(str(load["jid"]), os.path.join(self._opts["cachedir"], "jobs"),
                                         self._opts["hash_type"])
        if os.path.exists(os.path.join(jid_dir, "nocache")):
            return  # the job asked not to be cached: local_cache wrote nothing, as it should
        minion_dir = os.path.join(jid_dir, str(load["id"]))
        if _missing(minion_dir, load):
            if os.path.isdir(minion_dir):
                try:
                    _complete(minion_dir, load)
                except OSError as err:
                    raise StoreFailed(f"cannot write the {what} in {minion_dir}: {err}") from err
            if _missing(minion_dir, load):
                raise StoreFailed(f"the {what} is not in the job cache ({minion_dir})")
            log.warning("redis_syndic: job cache: the %s was half written (%s had no readable return); completed",
                        what, minion_dir)

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


class _ReturnerCall:
    """What the job cache's ``returner`` did during one ``store_job``."""

    def __init__(self) -> None:
        self.ran = False
        self.error: Exception | None = None


class _Watching:
    """The master minion as ``store_job`` sees it, its job cache returner watched (Salt swallows its errors)."""

    def __init__(self, mminion: Any, name: str, call: _ReturnerCall) -> None:
        self.returners = _WatchedReturners(mminion.returners, name, call)


class _WatchedReturners:
    def __init__(self, returners: Any, name: str, call: _ReturnerCall) -> None:
        self._returners, self._name, self._call = returners, name, call

    def __contains__(self, key: str) -> bool:
        return key in self._returners

    def __getitem__(self, key: str) -> Any:
        func = self._returners[key]
        if key != self._name:
            return func
        call = self._call

        def watched(*args: Any, **kwargs: Any) -> Any:
            call.ran = True
            try:
                return func(*args, **kwargs)
            except Exception as err:  # Salt logs it (and goes on); the store fails on it
                call.error = err
                raise

        return watched


def _missing(minion_dir: str, load: Mapping[str, Any]) -> list[str]:
    """The files of a return that local_cache should have and that are not readable (none: stored)."""
    names = [local_cache.RETURN_P] + ([local_cache.OUT_P] if "out" in load else [])
    return [name for name in names if not _readable(os.path.join(minion_dir, name))]


def _readable(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            salt.payload.load(fh)
    except Exception:  # missing, truncated, not msgpack: the return is not there  # noqa: BLE001
        return False
    return True


def _complete(minion_dir: str, load: Mapping[str, Any]) -> None:
    """Write what :func:`_missing` names, as ``local_cache.returner`` does (atomically, fsync'd)."""
    for name in _missing(minion_dir, load):
        data = {k: load[k] for k in RECORD_KEYS if k in load} if name == local_cache.RETURN_P else load["out"]
        with salt.utils.atomicfile.atomic_open(os.path.join(minion_dir, name), "w+b") as fh:
            fh.write(salt.payload.dumps(data, use_bin_type=True))

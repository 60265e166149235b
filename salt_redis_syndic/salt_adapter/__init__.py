"""The only package that imports Salt: event bus, LocalClient publishing (here); the job cache
(:mod:`.jobcache`); the local master's objects for the loops (:mod:`.local`); gitfs /
git_pillar (:mod:`.gitfs`).

Each function here mirrors what Salt itself does for a syndic (``Syndic.syndic_cmd``,
``_minion_event``/``_syndic_return``, ``salt.utils.job``); tests pin that behaviour against
the installed Salt release.  Objects are created inside the engine process that uses them.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Mapping

import salt.client
import salt.exceptions
import salt.utils.event

from ..errors import RedisSyndicError
from .jobcache import JobCache as JobCache  # re-exported: the loops build it from here (:mod:`.local`)
from .release import Release, grains_bank, passes_start_event, running

log = logging.getLogger(__name__)


class PublishFailed(RedisSyndicError):
    """The local master refused or did not answer a publish.

    ``retryable`` is True when the master did not answer (not up yet, restarting): the job
    is tried again.  A refusal (authentication, authorization) is final and reported.
    """

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class MasterBus:
    """The local master's event bus (one per thread: Salt event objects are not thread-safe)."""

    def __init__(self, opts: Mapping[str, Any], listen: bool) -> None:
        self._event = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=listen)

    def get(self, wait: float) -> tuple[str, dict[str, Any]] | None:
        """Next event, waiting up to ``wait`` seconds; ``wait <= 0`` never blocks.

        (Salt's own ``get_event(wait=0)`` blocks forever; that is never what we want.)
        """
        if wait <= 0:
            ev = self._event.get_event(full=True, no_block=True, auto_reconnect=True)
        else:
            ev = self._event.get_event(wait=wait, full=True, auto_reconnect=True)
        if not ev:
            return None
        return ev["tag"], ev["data"]

    def fire(self, data: Mapping[str, Any], tag: str) -> bool:
        return bool(self._event.fire_event(dict(data), tag))

    @property
    def salt_event(self) -> Any:
        return self._event

    def close(self) -> None:
        self._event.destroy()


class LocalPublisher:
    """Publishes a MoM job into the local master with the MoM's jid (what ``syndic_cmd`` does)."""

    def __init__(self, opts: Mapping[str, Any]) -> None:
        self._opts = opts
        self._client: Any = None

    def _local(self) -> Any:
        if self._client is None:
            self._client = salt.client.get_local_client(mopts=dict(self._opts))
        return self._client

    def publish(self, load: Mapping[str, Any], origin: str, timeout: float) -> list[str]:
        """Publish and return the targeted local minions.  Raises :class:`PublishFailed`."""
        kwargs: dict[str, Any] = {"master_id": origin}
        for key in ("user", "auth_list", "metadata", "ret_config", "ret_kwargs", "module_executors",
                    "executor_opts", "delimiter", "id"):
            if key in load:
                kwargs[key] = load[key]
        if load.get("start_event") and passes_start_event(running()):
            kwargs["start_event"] = True  # 3006/3007 minions fire no job start event: not passed
        try:
            pub = self._local().pub(
                load["tgt"], load["fun"], load.get("arg", []), tgt_type=load.get("tgt_type", "glob"),
                ret=load.get("ret", ""), jid=load["jid"], timeout=timeout, **kwargs,
            )
        except (salt.exceptions.SaltReqTimeoutError, salt.exceptions.SaltClientError, OSError) as err:
            self._client = None  # rebuild: the master may have restarted or not be up yet
            raise PublishFailed(f"{err.__class__.__name__}: {err}", retryable=True) from err
        except salt.exceptions.SaltException as err:
            raise PublishFailed(f"{err.__class__.__name__}: {err}", retryable=False) from err
        if not isinstance(pub, dict) or "minions" not in pub:
            # An empty reply means the master key changed under us or the master is restarting.
            self._client = None
            raise PublishFailed(f"unexpected publish reply {pub!r:.200}", retryable=True)
        return sorted(str(m) for m in pub.get("minions") or [])


def accepted_minion_count(opts: Mapping[str, Any]) -> int:
    try:
        return sum(1 for _ in os.scandir(os.path.join(opts["pki_dir"], "minions")))
    except OSError:
        return 0


def wait_for_master(opts: Mapping[str, Any], timeout: float, stop: Any) -> bool:
    """Engines start before the master's request server: wait for its publish socket."""
    deadline = time.monotonic() + timeout
    path = os.path.join(opts["sock_dir"], "publish_pull.ipc")
    while time.monotonic() < deadline and not stop.is_set():
        if opts.get("ipc_mode") == "tcp" or os.path.exists(path):
            return True
        stop.wait(0.2)
    return False


class MinionDataCache:
    """What the master caches about its minions (``minion_data_cache``): when, and which grains.

    The master stores each minion's grains whenever the minion fetches its pillar (start,
    refresh): the time of that write is a "last seen" that costs one stat, and the grains are
    re-read only when it changes.  Where depends on the release (:func:`.release.grains_bank`):
    3008 bank ``grains`` key ``<id>`` (the grains); 3006/3007 bank ``minions/<id>`` key ``data``
    (``{"grains": ..., "pillar": ...}``).
    """

    def __init__(self, opts: Mapping[str, Any], release: Release | None = None) -> None:
        import salt.cache

        self._cache = salt.cache.factory(dict(opts))
        self._bank, self._key = grains_bank(release or running())
        self._grains: dict[str, tuple[int | None, dict[str, Any] | None]] = {}

    def _where(self, minion: str) -> tuple[str, str]:
        return (self._bank.format(minion=minion), self._key) if self._key else (self._bank, minion)

    def updated(self, minion: str) -> int | None:
        try:
            value = self._cache.updated(*self._where(minion))
        except Exception:  # a cache driver error must not stop the roster  # noqa: BLE001
            return None
        return int(value) if value else None

    def grains(self, minion: str, names: tuple[str, ...]) -> dict[str, Any] | None:
        """The named grains of ``minion`` (None when the master has none cached)."""
        stamp = self.updated(minion)
        cached = self._grains.get(minion)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        picked: dict[str, Any] | None = None
        if stamp is not None:
            try:
                data = self._cache.fetch(*self._where(minion)) or {}
            except Exception:  # noqa: BLE001
                data = {}
            if self._key and isinstance(data, dict):
                data = data.get("grains") or {}  # 3006/3007: grains and pillar in one record
            if isinstance(data, dict):
                picked = {name: data[name] for name in names if name in data}
        self._grains[minion] = (stamp, picked)
        return picked

    def forget(self, keep: set[str]) -> None:
        for minion in [m for m in self._grains if m not in keep]:
            del self._grains[minion]


class KeyManager:
    """Changes one minion's key the way ``salt-key -a/-r/-d <id>`` does (exact id, never a glob)."""

    def __init__(self, opts: Mapping[str, Any]) -> None:
        import salt.key

        self._key = salt.key.get_key(dict(opts))

    def apply(self, action: str, minion: str) -> str:
        listed = self._key.list_keys()
        matches = {state: [minion] for state, ids in listed.items() if minion in ids}
        if not matches:
            return "no such key"
        if action == "accept":
            self._key.accept(match_dict=matches, include_rejected=True)
        elif action == "reject":
            self._key.reject(match_dict=matches, include_accepted=True)
        elif action == "delete":
            self._key.delete_key(match_dict=matches)
        else:
            raise ValueError(action)
        after = {state for state, ids in self._key.list_keys().items() if minion in ids}
        return f"{'/'.join(sorted(matches))} -> {'/'.join(sorted(after)) or 'deleted'}"

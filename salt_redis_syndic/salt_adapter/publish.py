"""The MoM's publish events as the publisher reads them, whatever the Salt release.

Salt 3007+ (``ClearFuncs.publish``, salt/master.py) fires ``salt/job/<jid>/publish`` with a copy
of the minion-bound load, plus ``auth_list`` with ``order_masters``.  Salt 3006 fires only
``<jid>`` (``{minions}``) and ``salt/job/<jid>/new`` (``jid, tgt, tgt_type, user, fun, arg,
minions, missing``: no ``ret``, no ``kwargs`` — so no ``metadata``, ``delimiter``,
``ret_config``, ``master_id`` ... — no ``to``), and only then saves the whole clear load
(``ret`` and ``kwargs`` included) in the job cache with ``<master_job_cache>.save_load``.

:class:`PublishEvents` makes 3006 look like 3007+: after each ``new`` event of
``ClearFuncs.publish`` (the only one with ``missing``; a peer publish's has none, and is not
bridged on 3007+ either) it reads the saved load back, waiting up to ``load_wait`` seconds for
the save, and queues a ``salt/job/<jid>/publish`` event built by :func:`publish_load` as
``ClearFuncs._prep_pub`` builds the minion-bound load.  What 3006 never records is
``auth_list`` (computed, used, dropped): such a load has none, and the publisher only sends
jobs of the master's own users without one (their ``auth_list`` is empty on 3007+ too).
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, Callable, Mapping

import salt.utils.event

from .release import Release, fires_publish_event, passes_start_event, running

log = logging.getLogger(__name__)

_KWARGS_COPIED = ("ret_config", "metadata", "module_executors", "executor_opts", "ret_kwargs")


def publish_tag(jid: str) -> str:
    """Salt's ``salt/job/<jid>/publish``."""
    return str(salt.utils.event.tagify([jid, "publish"], "job"))


def publish_load(jid: str, saved: Mapping[str, Any], release: Release | None = None) -> dict[str, Any]:
    """The minion-bound load ``ClearFuncs._prep_pub`` builds from a saved (clear) load.

    ``start_event`` is copied from the CLI's kwargs by 3008+ only (``release``: the running Salt).
    """
    load = {k: saved[k] for k in ("fun", "arg", "tgt", "tgt_type", "ret", "user", "to") if k in saved}
    load["jid"] = jid
    kwargs = saved.get("kwargs") if isinstance(saved.get("kwargs"), Mapping) else {}
    for key in _KWARGS_COPIED:
        if key in kwargs:
            load[key] = kwargs[key]
    for key in ("master_id", "id"):
        if kwargs.get(key):
            load[key] = kwargs[key]
    if kwargs.get("delimiter") not in (None, ":"):
        load["delimiter"] = kwargs["delimiter"]
    if kwargs.get("start_event") and passes_start_event(release or running()):
        load["start_event"] = True
    return load


def _new_job(tag: str, data: Any) -> str | None:
    """The jid of a ``salt/job/<jid>/new`` event fired by ``ClearFuncs.publish``, else None."""
    parts = tag.split("/")
    if len(parts) != 4 or parts[:2] != ["salt", "job"] or parts[3] != "new" or not parts[2]:
        return None
    if not isinstance(data, Mapping) or "missing" not in data or "fun" not in data:
        return None
    return parts[2]


class PublishEvents:
    """A listening master bus whose ``get`` also yields ``salt/job/<jid>/publish`` on Salt 3006.

    ``get_load(jid)``: the job cache's saved load (``{}`` while not saved).  On 3007+ this is the
    bus unchanged.  Everything else (``fire``, ``open``, ``close``...) is the bus's.
    """

    def __init__(self, bus: Any, get_load: Callable[[str], Mapping[str, Any]], release: Release | None = None,
                 load_wait: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.bus = bus
        self.release = release or running()
        self.synthesize = not fires_publish_event(self.release)
        self._get_load = get_load
        self._load_wait = load_wait
        self._sleep = sleep
        self._queued: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()

    def get(self, wait: float) -> tuple[str, Any] | None:
        if self._queued:
            return self._queued.popleft()
        event = self.bus.get(wait)
        if event is None or not self.synthesize:
            return event
        jid = _new_job(*event)
        if jid is not None:
            saved = self._saved_load(jid)
            if saved:
                self._queued.append((publish_tag(jid), publish_load(jid, saved, self.release)))
            else:
                log.error("redis_syndic: job %s (%s) is not sent to the DCs: Salt %d.%d fires no publish event and "
                          "its load was not in the job cache within %.0f s", jid, event[1].get("fun"),
                          *self.release, self._load_wait)
        return event  # the new event first, as Salt 3007+ fires it before the publish event

    def _saved_load(self, jid: str) -> Mapping[str, Any]:
        """The saved load: ``ClearFuncs`` saves it just after firing ``new`` (so poll briefly)."""
        deadline = time.monotonic() + self._load_wait
        delay = 0.005
        while True:
            try:
                saved = self._get_load(jid)
            except Exception as err:  # noqa: BLE001 - a job cache error: retried, then reported
                log.debug("redis_syndic: reading the saved load of %s: %s", jid, err)
                saved = {}
            if saved and "fun" in saved:
                return saved
            if time.monotonic() >= deadline:
                return {}
            self._sleep(delay)
            delay = min(delay * 2, 0.2)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)

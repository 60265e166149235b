"""The local master's Salt objects as the engine's loops get them: each opened on first use.

The loops are built once when the engine starts, in the engine's main thread, possibly before
the master answers; Salt's event and client objects are not thread-safe.  So what a loop is
given is a :class:`Lazy` handle, opened in the thread of the loop at its first use.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

from . import (
    JobCache,
    KeyManager,
    LocalPublisher,
    MasterBus,
    MinionDataCache,
    accepted_minion_count,
    wait_for_master,
)
from .keystore import KeyStoreCache
from .publish import PublishEvents


class Lazy:
    """An object built by ``open`` at the first attribute read (and kept)."""

    def __init__(self, open_: Callable[[], Any]) -> None:
        self._open = open_
        self._obj: Any = None

    def open(self) -> Any:
        if self._obj is None:
            self._obj = self._open()
        return self._obj

    def __getattr__(self, name: str) -> Any:
        return getattr(self.open(), name)


class LocalMaster:
    """What the loops of a role use of the local master (the Salt side of the engine)."""

    def __init__(self, opts: Mapping[str, Any]) -> None:
        self.opts = opts

    def bus(self, listen: bool) -> Any:
        return Lazy(lambda: MasterBus(self.opts, listen=listen))

    def publish_bus(self) -> Any:
        """The bus the MoM's publisher listens on: ``salt/job/<jid>/publish`` on every release
        (on 3006 built from ``new`` and the saved load, see :class:`.publish.PublishEvents`)."""
        def open_() -> PublishEvents:
            cache = Lazy(lambda: JobCache(self.opts))  # only opened on a release that needs it
            return PublishEvents(MasterBus(self.opts, listen=True), lambda jid: cache.get_load(jid))

        return Lazy(open_)

    def open_bus(self, listen: bool) -> MasterBus:
        """Opened now: for a loop that handles (and retries) a master that is not up yet."""
        return MasterBus(self.opts, listen=listen)

    def job_cache(self) -> Any:
        return Lazy(lambda: JobCache(self.opts))

    def publisher(self) -> Any:
        return Lazy(lambda: LocalPublisher(self.opts))

    def minion_data(self) -> MinionDataCache:
        return MinionDataCache(self.opts)

    def key_manager(self) -> KeyManager:
        return KeyManager(self.opts)

    def key_store(self, mirrored_dc: Callable[[Any], str | None]) -> KeyStoreCache:
        return KeyStoreCache(self.opts, mirrored_dc)

    def accepted_minion_count(self) -> int:
        return accepted_minion_count(self.opts)

    def wait_for_master(self, timeout: float, stop: threading.Event) -> bool:
        return wait_for_master(self.opts, timeout, stop)

"""What each role runs, built once from its collaborators: one small factory per role.

:func:`build_mom` and :func:`build_dc` construct every collaborator of a role once (keys,
ledgers, spool, dead letters, the Salt side) and pass it to the loops that use it; they return
the loops by name, each an object with ``run()``.  A bad key or option raises
:class:`ConfigError` here, before any loop starts.  The Salt side is a :class:`Master` (the
engine's is :class:`salt_adapter.local.LocalMaster`; tests give a fake).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from . import __version__
from .config import Settings, dc_keys_dir
from .estate.dc_estate import DcEstate
from .estate.key_orders import KeyOrders
from .estate.keymirror import KeyMirror, mirror_alarm, mirrored_dc
from .estate.mom_estate import MomEstate
from .jobs.consumer import JobConsumer
from .jobs.presence import wait_for_subscribers
from .jobs.publisher import JobPublisher
from .returns.collector import Collector
from .returns.shipper import Shipper
from .runtime import Counters, Gauges
from .security.dckeys import DcKeyring
from .security.signing import Verifier, load_or_create_signer
from .state.deadletter import DeadLetters
from .state.ledger import DcLedger, ledger_file
from .state.mom_ledger import MomLedger
from .state.spool import Spool
from .transport.connection import make_client
from .transport.keys import Keys

log = logging.getLogger(__name__)


class Loop(Protocol):
    def run(self) -> None: ...


class Master(Protocol):
    """The local master, as the loops use it (see :class:`salt_adapter.local.LocalMaster`)."""

    def bus(self, listen: bool) -> Any: ...
    def publish_bus(self) -> Any: ...
    def open_bus(self, listen: bool) -> Any: ...
    def job_cache(self) -> Any: ...
    def publisher(self) -> Any: ...
    def minion_data(self) -> Any: ...
    def key_manager(self) -> Any: ...
    def key_store(self, mirrored_dc: Callable[[Any], str | None]) -> Any: ...
    def accepted_minion_count(self) -> int: ...
    def wait_for_master(self, timeout: float, stop: threading.Event) -> bool: ...


@dataclass
class Role:
    """What every loop of a role shares: the stop flag and what they report into (status, metrics)."""

    settings: Settings
    opts: Mapping[str, Any]
    stop: threading.Event
    counters: Counters = field(default_factory=Counters)
    gauges: Gauges = field(default_factory=Gauges)


def local_master(opts: Mapping[str, Any]) -> Master:
    from .salt_adapter.local import LocalMaster

    return LocalMaster(opts)


def deadletters(settings: Settings) -> DeadLetters:
    """The role's dead letters: on disk, and in Redis through a client made at the first one."""
    client = None

    def get_client() -> Any:
        nonlocal client
        if client is None:
            client = make_client(settings.redis)
        return client

    return DeadLetters(os.path.join(settings.state_dir, "deadletter"), Keys(settings.namespace).deadletter,
                       settings.deadletter_max, get_client)


def build_mom(role: Role, master: Master | None = None) -> dict[str, Loop]:
    """The MoM's loops: ``publish`` (jobs down), ``collect`` (returns up), ``estate`` (when on)."""
    settings, opts = role.settings, role.opts
    master = master or local_master(opts)
    signer = load_or_create_signer(settings.signing_key)
    log.info("redis_syndic: MoM signs jobs with key %s (%s.pub)", signer.key_id, os.path.splitext(settings.signing_key)[0])
    published: queue.Queue[tuple[str, float]] = queue.Queue()
    dead = deadletters(settings)
    publisher_cache = master.job_cache()
    publish_bus = master.publish_bus()
    loops: dict[str, Loop] = {
        "publish": ListenFirst(JobPublisher(settings, publish_bus, signer, published, role.counters, role.stop,
                                            ledger=MomLedger(ledger_file(settings.state_dir, "mom")),
                                            recent_loads=lambda since: publisher_cache.recent_loads(since),
                                            master_user=str(opts.get("user") or "root"),
                                            owners=master.key_store(mirrored_dc).owners
                                            if settings.mirror_minion_keys else None), publish_bus),
        "collect": Collector(settings, master.bus(listen=False), master.job_cache(),
                             MomLedger(ledger_file(settings.state_dir, "mom")), published, dead, role.counters,
                             role.stop, gauges=role.gauges, keyring=DcKeyring(dc_keys_dir(settings), dict(settings.dc_keys)),
                             signer=signer),
    }
    if settings.estate:
        estate_bus = master.bus(listen=False)
        mirror = KeyMirror(master.key_store(mirrored_dc), settings.mirror_minion_keys,
                           mirror_alarm(estate_bus, role.counters))
        loops["estate"] = MomEstate(settings, opts, DcKeyring(dc_keys_dir(settings), dict(settings.dc_keys)),
                                    estate_bus, dead, role.counters, role.stop, mirror=mirror)
    return loops


@dataclass
class ListenFirst:
    """``loop`` run once ``bus`` listens, in the loop's own thread: what the master publishes while
    the loop recovers its outbox is on the bus, not lost."""

    loop: Loop
    bus: Any

    def run(self) -> None:
        opener = getattr(self.bus, "open", None)
        if callable(opener):
            opener()
        self.loop.run()


@dataclass
class AfterMaster:
    """``loop`` run once the local master answers and its minions had ``startup_grace`` to reconnect
    (minions reconnecting to a restarted master would miss the backlog published before)."""

    loop: Loop
    master: Master
    settings: Settings
    opts: Mapping[str, Any]
    stop: threading.Event
    wait_subscribers: Callable[..., bool] = wait_for_subscribers

    def run(self) -> None:
        self.master.wait_for_master(120, self.stop)
        self.wait_subscribers(int(self.opts.get("publish_port", 4505)), str(self.opts.get("interface", "")),
                              self.master.accepted_minion_count, self.settings.startup_grace, self.stop)
        self.loop.run()


def build_dc(role: Role, master: Master | None = None) -> dict[str, Loop]:
    """A DC's loops: ``jobs`` (jobs down, after the master is up), ``uplink`` (returns up), ``estate``."""
    settings, opts = role.settings, role.opts
    master = master or local_master(opts)
    signer = load_or_create_signer(settings.signing_key)
    log.info("redis_syndic: DC %s signs its uplink with key %s; on the MoM: salt-run redis_syndic.accept %s %s",
             settings.dc, signer.key_id, settings.dc, signer.key_id)
    Verifier(settings.trusted_keys)  # fail fast, once, on unreadable keys
    spool, wake, dead = Spool(settings.spool_dir), threading.Event(), deadletters(settings)
    consumer = JobConsumer(settings, master.publisher(), master.job_cache(), master.bus(listen=False), spool,
                           DcLedger(ledger_file(settings.state_dir, "dc")), dead, role.counters, role.stop, wake)
    shipper = Shipper(settings, spool, master.job_cache(), role.counters, role.stop, wake,
                      cursor=lambda: consumer.cursor, minion_count=master.accepted_minion_count, version=__version__,
                      gauges=role.gauges, bus=master.bus(listen=False), signer=signer,
                      ledger=DcLedger(ledger_file(settings.state_dir, "dc")), deadletters=dead)
    loops: dict[str, Loop] = {"jobs": AfterMaster(consumer, master, settings, opts, role.stop), "uplink": shipper}
    if settings.estate:
        orders = None
        if settings.key_management:
            orders = KeyOrders(settings, master.key_manager, dead, master.bus(listen=False), role.counters)
        loops["estate"] = DcEstate(settings, opts, signer, role.stop, role.counters,
                                   bus=lambda: master.open_bus(listen=True), minion_data=master.minion_data,
                                   orders=orders)
    return loops


def build(role: Role, master: Master | None = None) -> dict[str, Loop]:
    """The role's loops, keyed by name.  Raises :class:`ConfigError` for unusable keys."""
    return build_mom(role, master) if role.settings.is_mom else build_dc(role, master)

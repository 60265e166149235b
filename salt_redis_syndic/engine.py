"""Engine entry: validate settings once, then run the role's loops until the master stops.

Salt restarts an engine whose ``start()`` raises or returns about every 10 s, forever, with a
CRITICAL traceback each time.  So a configuration error is logged once, clearly, and the
engine then idles; transient failures are handled inside the loops with backoff.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Mapping

from . import __version__
from .config import Settings, load_settings
from .errors import ConfigError
from .ops.metrics import serve as serve_metrics
from .runtime import Counters, Gauges, run_threads
from .state.deadletter import DeadLetters
from .transport.connection import make_client
from .transport.keys import Keys

log = logging.getLogger(__name__)


def start(opts: Mapping[str, Any], kwargs: Mapping[str, Any] | None = None, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    counters, gauges = Counters(), Gauges()
    try:
        settings = load_settings(opts, kwargs)
        targets = build(settings, opts, stop, counters, gauges)
    except ConfigError as err:
        log.error("%s. The redis_syndic engine is idle until this is fixed and salt-master is restarted.", err)
        while not stop.is_set():
            stop.wait(3600)
        return
    log.info("redis_syndic: engine starting as %s%s (master id %s, redis %s)", settings.role,
             f" for DC {settings.dc}" if settings.dc else "", settings.master_id, settings.redis.safe_url)
    server = serve_metrics(settings, lambda: (counters.snapshot(), gauges.snapshot()), __version__)
    try:
        run_threads(targets, stop, log)
    finally:
        if server is not None:
            server.close()


def _deadletters(settings: Settings) -> DeadLetters:
    client = None

    def get_client() -> Any:
        nonlocal client
        if client is None:
            client = make_client(settings.redis)
        return client

    return DeadLetters(os.path.join(settings.state_dir, "deadletter"), Keys(settings.namespace).deadletter,
                       settings.deadletter_max, get_client)


class _LazyBus:
    """The local bus, opened at the first event (the uplink loop starts before the master is up)."""

    def __init__(self, opts: Mapping[str, Any]) -> None:
        self.opts = opts
        self._bus: Any = None

    def fire(self, data: Mapping[str, Any], tag: str) -> bool:
        from . import salt_adapter

        if self._bus is None:
            self._bus = salt_adapter.MasterBus(self.opts, listen=False)
        return self._bus.fire(data, tag)


def build(settings: Settings, opts: Mapping[str, Any], stop: threading.Event,
          counters: Counters | None = None, gauges: Gauges | None = None) -> dict[str, Any]:
    """The role's loops, keyed by name.  Raises :class:`ConfigError` for unusable keys.

    ``counters`` and ``gauges`` are what the loops report into (status record, metrics).
    """
    from . import salt_adapter

    counters = counters if counters is not None else Counters()
    gauges = gauges if gauges is not None else Gauges()
    if settings.is_mom:
        from .config import dc_keys_dir
        from .jobs.publisher import JobPublisher
        from .returns.collector import Collector
        from .security.dckeys import DcKeyring
        from .security.signing import load_or_create_signer
        from .state.ledger import MomLedger, ledger_file

        signer = load_or_create_signer(settings.signing_key)
        log.info("redis_syndic: MoM signs jobs with key %s (%s.pub)", signer.key_id, os.path.splitext(settings.signing_key)[0])
        published: queue.Queue[tuple[str, float]] = queue.Queue()
        keyring = DcKeyring(dc_keys_dir(settings), dict(settings.dc_keys))

        def publish_loop() -> None:
            JobPublisher(settings, salt_adapter.MasterBus(opts, listen=True), signer, published, counters, stop,
                         ledger=MomLedger(ledger_file(settings.state_dir, "mom")),
                         recent_loads=salt_adapter.JobCache(opts).recent_loads,
                         master_user=str(opts.get("user") or "root")).run()

        def collect_loop() -> None:
            Collector(settings, salt_adapter.MasterBus(opts, listen=False), salt_adapter.JobCache(opts),
                      MomLedger(ledger_file(settings.state_dir, "mom")), published, _deadletters(settings), counters, stop,
                      gauges=gauges, keyring=keyring, signer=signer).run()

        loops = {"publish": publish_loop, "collect": collect_loop}
        if settings.estate:
            def estate_loop() -> None:
                from .estate.mom_estate import MomEstate

                MomEstate(settings, opts, DcKeyring(dc_keys_dir(settings), dict(settings.dc_keys)), _LazyBus(opts),
                          _deadletters(settings), counters, stop).run()

            loops["estate"] = estate_loop
        return loops

    from .jobs.consumer import JobConsumer
    from .jobs.presence import wait_for_subscribers
    from .returns.shipper import Shipper
    from .security.signing import Verifier, load_or_create_signer
    from .state.ledger import DcLedger, ledger_file
    from .state.spool import Spool

    uplink_signer = load_or_create_signer(settings.signing_key)
    log.info("redis_syndic: DC %s signs its uplink with key %s; on the MoM: salt-run redis_syndic.accept %s",
             settings.dc, uplink_signer.key_id, settings.dc)
    Verifier(settings.trusted_keys)  # fail fast, once, on unreadable keys
    ledger = DcLedger(ledger_file(settings.state_dir, "dc"))
    spool = Spool(settings.spool_dir)
    wake = threading.Event()
    consumer_ref: dict[str, JobConsumer] = {}

    def jobs_loop() -> None:
        salt_adapter.wait_for_master(opts, 120, stop)
        # Minions reconnecting to a (re)started master would miss the backlog published now.
        wait_for_subscribers(int(opts.get("publish_port", 4505)), str(opts.get("interface", "")),
                             lambda: salt_adapter.accepted_minion_count(opts), settings.startup_grace, stop)
        consumer = JobConsumer(settings, salt_adapter.LocalPublisher(opts), salt_adapter.JobCache(opts),
                               salt_adapter.MasterBus(opts, listen=False), spool, ledger, _deadletters(settings),
                               counters, stop, wake)
        consumer_ref["c"] = consumer
        consumer.run()

    def uplink_loop() -> None:
        Shipper(settings, spool, salt_adapter.JobCache(opts), counters, stop, wake,
                cursor=lambda: consumer_ref["c"].cursor if "c" in consumer_ref else ledger.cursor(),
                minion_count=lambda: salt_adapter.accepted_minion_count(opts), version=__version__,
                gauges=gauges, bus=_LazyBus(opts), signer=uplink_signer, ledger=DcLedger(ledger_file(settings.state_dir, "dc")),
                deadletters=_deadletters(settings)).run()

    loops = {"jobs": jobs_loop, "uplink": uplink_loop}
    if settings.estate:
        def estate_loop() -> None:
            from .estate.dc_estate import DcEstate
            from .estate.key_orders import KeyOrders

            orders = None
            if settings.key_management:
                orders = KeyOrders(settings, lambda: salt_adapter.KeyManager(opts), _deadletters(settings),
                                   _LazyBus(opts), counters)
            DcEstate(settings, opts, uplink_signer, stop, counters,
                     bus=lambda: salt_adapter.MasterBus(opts, listen=True),
                     minion_data=lambda: salt_adapter.MinionDataCache(opts), orders=orders).run()

        loops["estate"] = estate_loop
    return loops

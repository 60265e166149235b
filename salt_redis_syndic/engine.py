"""Engine entry: validate settings once, then run the role's loops until the master stops.

Salt restarts an engine whose ``start()`` raises or returns about every 10 s, forever, with a
CRITICAL traceback each time.  So a configuration error is logged once, clearly, and the
engine then idles; transient failures are handled inside the loops with backoff.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping

from . import __version__
from .app import Loop, Role, build
from .config import load_settings
from .errors import ConfigError, UnsupportedSalt
from .ops.metrics import serve as serve_metrics
from .runtime import run_threads
from .salt_adapter.release import Release, check_supported, running

log = logging.getLogger(__name__)


def start(opts: Mapping[str, Any], kwargs: Mapping[str, Any] | None = None, stop: threading.Event | None = None,
          *, factory: Callable[[Role], dict[str, Loop]] = build,
          salt_release: Callable[[], Release] = running) -> None:
    """Run the role's loops until ``stop`` (Salt's engine entry point; ``factory`` builds the loops,
    ``salt_release`` says which Salt runs them)."""
    stop = stop or threading.Event()
    try:
        newer = check_supported(salt_release())
        if newer:
            log.warning("%s", newer)
        role = Role(load_settings(opts, kwargs), opts, stop)
        loops = factory(role)
    except (ConfigError, UnsupportedSalt) as err:
        log.error("%s. The redis_syndic engine is idle until this is fixed and salt-master is restarted.", err)
        while not stop.is_set():
            stop.wait(3600)
        return
    settings, counters, gauges = role.settings, role.counters, role.gauges
    log.info("redis_syndic: engine starting as %s%s (master id %s, redis %s)", settings.role,
             f" for DC {settings.dc}" if settings.dc else "", settings.master_id, settings.redis.safe_url)
    server = serve_metrics(settings, lambda: (counters.snapshot(), gauges.snapshot()), __version__)
    try:
        run_threads({name: loop.run for name, loop in loops.items()}, stop, log)
    finally:
        if server is not None:
            server.close()

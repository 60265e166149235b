"""Library side of the ``redis_syndic`` returner (runs in Salt's EventReturn process)."""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

from .config import Settings, load_settings
from .errors import ConfigError, SpoolError
from .events.forwarding import EventForwarder, unfiltered_globs
from .returns.relay import ack_extensions
from .returns.spooling import returns_to_spool
from .runtime import RateLimitedLog
from .state.ledger import DcLedger, ledger_file
from .state.spool import Spool

log = logging.getLogger(__name__)
_rl = RateLimitedLog(log, interval=60.0)
_cache: dict[int, tuple[Settings, Spool, DcLedger, EventForwarder]] = {}


def _setup(opts: Mapping[str, Any]) -> tuple[Settings, Spool, DcLedger, EventForwarder]:
    key = id(opts)
    if key not in _cache:
        settings = load_settings(opts)
        if settings.role != "dc":
            raise ConfigError("role", "the redis_syndic returner belongs on a DC master (role: dc)")
        _cache.clear()
        # The DC engine's ledger (SQLite, WAL) says which jids are bridged and from which MoM.
        _cache[key] = (settings, Spool(settings.spool_dir), DcLedger(ledger_file(settings.state_dir, "dc")),
                       EventForwarder(settings))
        hidden = unfiltered_globs(settings, opts)
        if hidden:
            log.warning("redis_syndic: forward_events %s never reach the returner: add them to event_return_whitelist",
                        ", ".join(hidden))
    return _cache[key]


def forget_setup() -> None:
    """Drop the settings, spool and ledger kept for the current opts: the next batch builds them again."""
    _cache.clear()


def event_return(events: Iterable[Mapping[str, Any]], opts: Mapping[str, Any]) -> None:
    """Spool bridged returns.  Never raises: EventReturn drops the whole batch if we do."""
    try:
        settings, spool, ledger, forwarder = _setup(opts)
        events = list(events)
        messages = (ack_extensions(events, settings, ledger.origin_of) + returns_to_spool(events, settings, ledger.origin_of)
                    + forwarder.to_spool(events))
        if messages:
            spool.append(messages)
    except ConfigError as err:
        _rl.log(logging.ERROR, "config", "%s; returns of bridged jobs are NOT forwarded", err)
    except SpoolError as err:
        _rl.log(logging.CRITICAL, "spool", "redis_syndic returner: %s; returns are being lost", err)
    except Exception:  # never into EventReturn
        log.exception("redis_syndic returner: unexpected error; batch not spooled")


def warn_direct_use() -> None:
    _rl.log(logging.WARNING, "direct",
            "redis_syndic is an event_return returner for DC masters; as a minion returner (--return) it does nothing")

"""DC -> MoM: the returner spools, the DC engine ships the spool to Redis in batches.

``spool_returns`` runs inside Salt's EventReturn process: it only filters events and appends
them to the local spool (bounded time, never raises).  ``Shipper`` runs in the DC engine: it
reads spool files oldest first, fills in returns that were too big for the event bus from the
job cache, packs many messages per Redis list item, pushes them per destination MoM in one
round trip, and deletes the files only after Redis accepted them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Protocol

from .config import Settings
from .envelope import DcStatus, encode_batch, is_trimmed
from .runtime import Backoff, Counters, RateLimitedLog
from .spool import Spool, SpoolFile
from .transport.connection import TRANSIENT, describe_error, make_client
from .transport.keys import Keys
from .transport.stream import JobStream, id_millis

log = logging.getLogger(__name__)

RET_TAG = re.compile(r"^salt/job/(\d{20}[0-9A-Za-z_]*)/ret/([^/]+)$")
TRIMMED_WAIT = 30.0  # seconds to wait for the job cache to hold a return trimmed on the bus


def returns_to_spool(events: Iterable[Mapping[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """Uplink messages for the returns of bridged jobs among EventReturn ``events``.

    A return belongs to a bridged job when its load carries the ``master_id`` of another
    master: the DC engine published it with the MoM's id (Salt's loop guard).
    """
    out = []
    for event in events:
        match = RET_TAG.match(str(event.get("tag", "")))
        data = event.get("data")
        if not match or not isinstance(data, dict):
            continue
        mom = data.get("master_id")
        if not isinstance(mom, str) or not mom or mom == settings.master_id:
            continue
        jid, minion = match.groups()
        load = {k: v for k, v in data.items() if k != "_stamp"}
        msg: dict[str, Any] = {"t": "ret", "jid": jid, "dc": settings.dc, "id": minion, "load": load,
                               "mom": mom, "spooled_at": time.time()}
        if is_trimmed(data):
            msg["trimmed"] = True
        out.append(msg)
    return out


class ReturnLookup(Protocol):
    def get_return(self, jid: str, minion: str) -> dict[str, Any] | None: ...


class Shipper:
    """The ``uplink`` loop of a DC engine: spool -> Redis, plus the heartbeat."""

    def __init__(self, settings: Settings, spool: Spool, cache: ReturnLookup, counters: Counters,
                 stop: threading.Event, wake: threading.Event, cursor: Callable[[], str],
                 minion_count: Callable[[], int], version: str) -> None:
        assert settings.dc is not None
        self.settings = settings
        self.dc = settings.dc
        self.spool = spool
        self.cache = cache
        self.counters = counters
        self.stop = stop
        self.wake = wake
        self.cursor = cursor
        self.minion_count = minion_count
        self.version = version
        self.keys = Keys(settings.namespace)
        self._rl = RateLimitedLog(log)
        self._next_heartbeat = 0.0

    def run(self) -> None:
        client = make_client(self.settings.redis)
        backoff = Backoff(base=0.2, cap=5.0)
        while not self.stop.is_set():
            try:
                shipped = self.ship_once(client)
                self.heartbeat(client)
                if backoff.failing:
                    log.warning("redis_syndic: uplink to %s works again; spool draining", self.settings.redis.safe_url)
                backoff.reset()
            except TRANSIENT as err:
                self.counters.inc("reconnects")
                self._rl.log(logging.WARNING, "push",
                             "redis_syndic: Redis at %s unreachable (%s); %d spool file(s) kept on disk, retrying",
                             self.settings.redis.safe_url, describe_error(err), self.spool.depth())
                self.stop.wait(backoff.next())
                continue
            if not shipped:
                self.wake.wait(self.settings.spool_poll_interval)
                self.wake.clear()

    def ship_once(self, client: Any) -> int:
        """Push one round of spool files; returns how many messages went out."""
        files = self.spool.pending(limit=max(1, self.settings.batch_max_messages))
        if not files:
            return 0
        taken: list[SpoolFile] = []
        by_mom: dict[str, list[dict[str, Any]]] = {}
        size = 0
        count = 0
        for item in files:
            messages = self.spool.read(item)
            if messages is None:
                continue
            if not self._complete(messages):
                break  # a trimmed return not yet in the job cache: keep order, try again shortly
            taken.append(item)
            for msg in messages:
                mom = msg.pop("mom", None)
                msg.pop("spooled_at", None)
                if not isinstance(mom, str) or not mom:
                    log.error("redis_syndic: spool message without destination dropped: %.200r", msg)
                    continue
                by_mom.setdefault(mom, []).append(msg)
                count += 1
            size += item.size
            if count >= self.settings.batch_max_messages or size >= self.settings.batch_max_bytes:
                break
        if by_mom:
            pipe = client.pipeline(transaction=False)
            for mom, messages in by_mom.items():
                pipe.lpush(self.keys.uplink(mom), encode_batch(self.dc, messages))
            pipe.execute()
        self.spool.remove(taken)
        self.counters.inc("uplink_messages", count)
        self.counters.inc("returns_forwarded", sum(1 for ms in by_mom.values() for m in ms if m.get("t") == "ret"))
        return count

    def _complete(self, messages: list[dict[str, Any]]) -> bool:
        """Replace trimmed returns by the whole return from the job cache (False: not there yet)."""
        for msg in messages:
            if not msg.get("trimmed"):
                continue
            full = self.cache.get_return(msg["jid"], msg["id"])
            if full is None:
                if time.time() - float(msg.get("spooled_at", 0)) < TRIMMED_WAIT:
                    return False
                log.error("redis_syndic: whole return of %s for job %s not found in the job cache; sending it trimmed",
                          msg["id"], msg["jid"])
                continue
            msg["load"].update(full)
            del msg["trimmed"]
        return True

    def heartbeat(self, client: Any) -> None:
        now = time.time()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.settings.heartbeat_interval
        stream = JobStream(client, self.keys.jobs, self.settings.stream_maxlen)
        last = stream.last_id()
        cursor = self.cursor() or "0-0"
        lag = max(0.0, (id_millis(last) - id_millis(cursor)) / 1000.0)
        status = DcStatus(dc=self.dc, last_seen=now, cursor=cursor, stream_last_id=last, lag_seconds=lag,
                          spool_depth=self.spool.depth(), minion_count=self.minion_count(), version=self.version,
                          master_id=self.settings.master_id, counters=self.counters.snapshot())
        pipe = client.pipeline(transaction=False)
        pipe.set(self.keys.status(self.dc), status.encode())
        pipe.sadd(self.keys.dcs, self.dc)
        pipe.execute()


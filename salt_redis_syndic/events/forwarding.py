"""Event forwarding between tiers (the part of Salt's syndic that reactors on a MoM rely on).

Up (``forward_events`` on a DC): events on the DC bus whose tag matches a glob reach the
``redis_syndic`` returner (EventReturn), are spooled as ``ev`` messages, one per MoM in
``moms``, and ride in the DC's signed uplink batches.  The MoM fires each as
``redis_syndic/dc/<dc>/event/<original tag>`` and, with ``forward_events_original_tag``, under
the original tag too (never for tags that would impersonate returns, job announcements or
this bridge's own events).  A token bucket (``forward_events_rate`` per second) and a size cap
(``forward_events_max_bytes``) bound what a noisy DC can push; drops are counted and logged.

This module has no I/O and no Salt import.
"""

from __future__ import annotations

import logging
import time
from fnmatch import fnmatchcase
from typing import Any, Iterable, Mapping

from ..config import Settings
from ..wire.codec import pack

log = logging.getLogger(__name__)

# Original tags a forwarded event may never be fired under on the MoM: a DC must not be able to
# forge a return, a job announcement the CLI counts minions from, auth, or the bridge's own alarms.
PROTECTED_PREFIXES = ("salt/job/", "salt/auth", "salt/key", "syndic/", "redis_syndic/", "salt/run/", "salt/wheel/")


def up_tag(dc: str, tag: str) -> str:
    """Tag of a forwarded event on the MoM bus: names the DC it came from."""
    return f"redis_syndic/dc/{dc}/event/{tag}"


def may_fire_original(tag: str) -> bool:
    return not tag.startswith(PROTECTED_PREFIXES)


def matches(tag: str, globs: Iterable[str]) -> bool:
    return any(fnmatchcase(tag, glob) for glob in globs)


class EventBudget:
    """Token bucket: at most ``rate`` events per second on average, bursts up to ``rate``."""

    def __init__(self, rate: float, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class EventForwarder:
    """Turns EventReturn events into spooled ``ev`` messages (runs in the returner's process)."""

    def __init__(self, settings: Settings, budget: EventBudget | None = None) -> None:
        self.settings = settings
        self.budget = budget or EventBudget(settings.forward_events_rate)
        self.dropped: dict[str, int] = {"rate": 0, "size": 0}
        self._last_report = float("-inf")

    def to_spool(self, events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        settings = self.settings
        if not settings.forward_events or not settings.moms:
            return []
        out: list[dict[str, Any]] = []
        for event in events:
            tag = event.get("tag")
            data = event.get("data")
            if not isinstance(tag, str) or not matches(tag, settings.forward_events) or tag.startswith(DOWN_PREFIX):
                continue  # (an event that came down from a MoM never goes back up)
            if not isinstance(data, dict):
                data = {"data": data}
            if not self.budget.take():
                self.dropped["rate"] += 1
                continue
            if len(pack(data)) > settings.forward_events_max_bytes:
                self.dropped["size"] += 1
                continue
            now = time.time()
            for mom in settings.moms:
                out.append({"t": "ev", "dc": settings.dc, "tag": tag, "data": data, "mom": mom, "spooled_at": now})
        self._report()
        return out

    def _report(self) -> None:
        """One loud line a minute while events are being dropped."""
        if not any(self.dropped.values()):
            return
        now = time.monotonic()
        if now - self._last_report < 60.0:
            return
        self._last_report = now
        log.warning("redis_syndic: DC %s dropped forwarded events: %d over forward_events_rate (%.0f/s), %d over "
                    "forward_events_max_bytes (%d)", self.settings.dc, self.dropped["rate"],
                    self.settings.forward_events_rate, self.dropped["size"], self.settings.forward_events_max_bytes)
        self.dropped = {"rate": 0, "size": 0}


def unfiltered_globs(settings: Settings, opts: Mapping[str, Any]) -> list[str]:
    """``forward_events`` globs that ``event_return_whitelist`` would keep from the returner."""
    whitelist = opts.get("event_return_whitelist") or []
    if isinstance(whitelist, str):
        whitelist = [whitelist]
    if not whitelist:
        return []
    return [glob for glob in settings.forward_events if not any(fnmatchcase(glob, w) for w in whitelist)]


# ---------------------------------------------------------------------------- down (MoM -> DCs)

DOWN_PREFIX = "redis_syndic/mom/"


def down_tag(mom: str, tag: str) -> str:
    """Tag of an event from the MoM on a DC bus: names the MoM it came from."""
    return f"{DOWN_PREFIX}{mom}/event/{tag}"


class DownForwarder:
    """MoM bus events matching ``forward_events_down``, collected for the next stream entry.

    Never forwarded down: the bridge's own events (``redis_syndic/``, which include events that
    came up from a DC) and events fired under their original tag after coming up
    (``redis_syndic_dc`` in their data), so an event cannot bounce between tiers.
    """

    def __init__(self, settings: Settings, budget: EventBudget | None = None) -> None:
        self.settings = settings
        self.budget = budget or EventBudget(settings.forward_events_rate)
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.dropped = 0
        self._last_report = float("-inf")

    def offer(self, tag: str, data: Any) -> bool:
        if not self.settings.forward_events_down or not matches(tag, self.settings.forward_events_down):
            return False
        if tag.startswith("redis_syndic/") or (isinstance(data, dict) and "redis_syndic_dc" in data):
            return False
        data = data if isinstance(data, dict) else {"data": data}
        if not self.budget.take() or len(pack(data)) > self.settings.forward_events_max_bytes:
            self.dropped += 1
            self._report()
            return False
        self.pending.append((tag, data))
        return True

    def _report(self) -> None:
        now = time.monotonic()
        if now - self._last_report >= 60.0:
            self._last_report = now
            log.warning("redis_syndic: dropped %d event(s) to forward down (over forward_events_rate %.0f/s or "
                        "forward_events_max_bytes %d)", self.dropped, self.settings.forward_events_rate,
                        self.settings.forward_events_max_bytes)
            self.dropped = 0


def fire_down(bus: Any, envelope: Any, now: float, skew: float) -> int:
    """Fire the events of an :class:`~salt_redis_syndic.wire.jobs.EventsEnvelope` on a DC bus.

    Expired batches (a DC catching up long after) are not fired.  Returns how many were fired.
    """
    if now > envelope.expires_at + skew:
        return 0
    for tag, data in envelope.events:
        bus.fire({"mom": envelope.origin, "tag": tag, "data": data}, down_tag(envelope.origin, tag))
    return len(envelope.events)

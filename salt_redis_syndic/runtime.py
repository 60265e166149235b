"""Loop plumbing shared by the engine roles: backoff, rate-limited logging, counters, gauges, threads."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol


class FireBus(Protocol):
    """A master's event bus as the loops that only announce use it (``salt_adapter.MasterBus``).

    Declared here, on the lowest floor, so every loop types its bus the same way without
    importing Salt.
    """

    def fire(self, data: Mapping[str, Any], tag: str) -> bool: ...


class ListenBus(FireBus, Protocol):
    """A master's event bus as the loops that also read events use it."""

    def get(self, wait: float) -> tuple[str, dict[str, Any]] | None: ...


class Backoff:
    """Exponential backoff for reconnect loops (Salt restarts a crashed engine with none)."""

    def __init__(self, base: float = 0.1, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self._attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * (2 ** self._attempt))
        self._attempt += 1
        return delay

    def reset(self) -> None:
        self._attempt = 0

    @property
    def failing(self) -> bool:
        return self._attempt > 0


class RateLimitedLog:
    """Log the same failure at most once per ``interval`` seconds, with a repeat count.

    Keys may name single records (a rejected entry id): keys idle for a whole interval with
    nothing suppressed are forgotten past ``MAX_KEYS`` (at most once an interval), which logs
    exactly as before.
    """

    MAX_KEYS = 1024

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._log = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._forgot_at = -1e9
        self._budgets: dict[str, tuple[float, int]] = {}  # key -> (start of its interval, uses in it)
        self._skipped: Counter[str] = Counter()

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self._interval:
            extra = self._suppressed.pop(key, 0)
            if extra:
                msg += f" (repeated {extra} times)"
            self._last[key] = now
            self._log.log(level, msg, *args)
        else:
            self._suppressed[key] += 1
        if len(self._last) > self.MAX_KEYS and now - self._forgot_at >= self._interval:
            self._forget_idle(now)

    def allow(self, key: str, budget: int) -> int | None:
        """Spend one of ``budget`` uses of ``key`` per interval (several keys of :meth:`log` may
        share one budget).  None: over budget, skip it; else how many were skipped since the
        last allowed use (0 most of the time)."""
        now = time.monotonic()
        start, used = self._budgets.get(key, (-1e9, 0))
        if now - start >= self._interval:
            start, used = now, 0
        if used >= budget:
            self._budgets[key] = (start, used)
            self._skipped[key] += 1
            return None
        self._budgets[key] = (start, used + 1)
        return self._skipped.pop(key, 0)

    def _forget_idle(self, now: float) -> None:
        """Drop keys that would log on their next use anyway and owe no repeat count."""
        self._forgot_at = now
        for key in [k for k, at in self._last.items() if now - at >= self._interval and k not in self._suppressed]:
            del self._last[key]


class Counters:
    """Thread-safe monotonic counters exported in the DC status record."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter()

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._c[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)


GaugeKey = tuple[str, tuple[tuple[str, str], ...]]


class Gauges:
    """Thread-safe current values (spool depth, lag, live DCs...) set by the loops that know them.

    A gauge may carry extra labels (``gauges.set("dc_alive", 1, dc="east")`` on the MoM);
    :meth:`remove` forgets a labelled value that no longer exists.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._g: dict[GaugeKey, float] = {}

    @staticmethod
    def _key(name: str, labels: dict[str, str]) -> GaugeKey:
        return name, tuple(sorted((k, str(v)) for k, v in labels.items()))

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._g[self._key(name, labels)] = float(value)

    def remove(self, name: str, **labels: str) -> None:
        with self._lock:
            self._g.pop(self._key(name, labels), None)

    def get(self, name: str, default: float | None = None, **labels: str) -> float | None:
        with self._lock:
            return self._g.get(self._key(name, labels), default)

    def snapshot(self) -> dict[GaugeKey, float]:
        with self._lock:
            return dict(self._g)


def run_threads(targets: dict[str, Callable[[], None]], stop: threading.Event, log: logging.Logger) -> None:
    """Run each loop in a daemon thread until ``stop`` is set; a loop that dies is restarted."""
    threads: dict[str, threading.Thread] = {}

    def guarded(name: str, fn: Callable[[], None]) -> None:
        backoff = Backoff(base=1.0, cap=30.0)
        while not stop.is_set():
            try:
                fn()
                return
            except Exception:  # a bug must not kill the engine silently: log it and restart the loop
                log.exception("redis_syndic: %s loop crashed; restarting it", name)
                stop.wait(backoff.next())

    for name, fn in targets.items():
        thread = threading.Thread(target=guarded, args=(name, fn), name=f"redis_syndic-{name}", daemon=True)
        threads[name] = thread
        thread.start()
    while not stop.is_set():
        stop.wait(1.0)
    for thread in threads.values():
        thread.join(timeout=5)


def write_atomic(path: str, data: bytes, *, mode: int = 0o666, dir_mode: int = 0o700, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary name and a rename: a reader sees the old
    file or the new one, never half of it.  ``mode`` is the new file's (before the umask);
    ``fsync`` makes the content durable before the rename (keys: a crash must not leave an empty one)."""
    os.makedirs(os.path.dirname(path) or ".", mode=dir_mode, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def jid_time(jid: str, utc: bool = False) -> float | None:
    """Epoch seconds Salt made ``jid`` at (``%Y%m%d%H%M%S%f``, local time unless ``utc_jid``).

    Here, on the lowest floor, because both the Salt side and the runner views read it.
    """
    try:
        when = datetime.strptime(jid[:20], "%Y%m%d%H%M%S%f")
    except ValueError:
        return None
    return (when.replace(tzinfo=timezone.utc) if utc else when).timestamp()

"""Durable on-disk spool of uplink messages on a DC master.

The returner runs inside Salt's EventReturn process, where any blocking call holds up every
event behind it and any exception drops the batch.  So it never talks to Redis: it appends
each batch of messages to this spool (one small file, written to a temp name, fsync'd and
renamed), and the DC engine ships spool files to Redis in order and deletes them only after
Redis accepted them.  Redis being away therefore costs latency, never data.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from ..errors import SpoolError
from ..wire.codec import pack, unpack_local

log = logging.getLogger(__name__)

SUFFIX = ".mp"
_counter = itertools.count()


@dataclass(frozen=True)
class SpoolFile:
    name: str
    path: str
    size: int


class Spool:
    def __init__(self, directory: str, fsync: bool = True) -> None:
        self.directory = directory
        self.bad_directory = os.path.join(directory, "bad")
        self._fsync = fsync
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._ready = True

    def append(self, messages: list[dict[str, Any]]) -> str:
        """Durably add ``messages`` as one spool file; returns its name."""
        if not messages:
            return ""
        try:
            self._ensure()
            name = f"{time.time_ns():020d}-{os.getpid():07d}-{next(_counter):09d}{SUFFIX}"
            tmp = os.path.join(self.directory, f".tmp-{name}")
            data = pack(messages)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, os.path.join(self.directory, name))
            if self._fsync:
                self._fsync_dir()
            return name
        except OSError as err:
            raise SpoolError(f"cannot write spool file in {self.directory}: {err.strerror}") from err

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def pending(self, limit: int = 1000) -> list[SpoolFile]:
        """Oldest spool files first (names sort by creation time)."""
        try:
            with os.scandir(self.directory) as it:
                entries = [e for e in it if e.name.endswith(SUFFIX) and not e.name.startswith(".") and e.is_file()]
        except FileNotFoundError:
            return []
        entries.sort(key=lambda e: e.name)
        out = []
        for entry in entries[:limit]:
            try:
                out.append(SpoolFile(entry.name, entry.path, entry.stat().st_size))
            except FileNotFoundError:
                continue
        return out

    def read(self, item: SpoolFile) -> list[dict[str, Any]] | None:
        """Messages of one file; a corrupt file is moved aside (kept for inspection) and ``None`` returned."""
        try:
            with open(item.path, "rb") as fh:
                data = fh.read()
            messages = unpack_local(data)
            if not isinstance(messages, list):
                raise ValueError("not a list")
            return messages
        except FileNotFoundError:
            return None
        except Exception as err:  # corrupt file: quarantine, never lose it silently
            os.makedirs(self.bad_directory, exist_ok=True)
            os.replace(item.path, os.path.join(self.bad_directory, item.name))
            log.error("redis_syndic: spool file %s is unreadable (%s); moved to %s",
                      item.name, err.__class__.__name__, self.bad_directory)
            return None

    def remove(self, items: list[SpoolFile]) -> None:
        for item in items:
            try:
                os.unlink(item.path)
            except FileNotFoundError:
                pass

    def depth(self) -> int:
        try:
            with os.scandir(self.directory) as it:
                return sum(1 for e in it if e.name.endswith(SUFFIX) and not e.name.startswith("."))
        except FileNotFoundError:
            return 0


"""Dead-letter place for rejected entries: a local directory (always) and a capped Redis list.

A rejected entry is never run and never silently dropped: it is kept with its reason so an
operator can see what was attempted (``<state_dir>/deadletter/`` and the ``<ns>:deadletter`` list).
Both keep the newest ``deadletter_max`` records: a flood of hostile entries must not fill the
master's disk; pruning the local directory is logged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any, Callable, Mapping

from ..errors import TransportError
from ..transport.connection import Client
from ..transport.deadletter import DeadLetterList
from ..wire.codec import pack, unpack_local

log = logging.getLogger(__name__)

RAW_KEEP = 64 * 1024  # bytes of each raw field kept for inspection
RECORD_MAX = 64 * 1024  # bytes of one whole record (local file and Redis list item)
HEAD_KEEP = 16 * 1024  # packed bytes of an oversized entry kept in its record


def _trim(raw: Any, depth: int = 0) -> Any:
    """A bounded copy of a rejected entry: enough to see what was attempted, never huge."""
    if depth > 8:
        return "..."
    if isinstance(raw, Mapping):
        return {str(k)[:200]: _trim(v, depth + 1) for k, v in list(raw.items())[:64]}
    if isinstance(raw, (list, tuple)):
        return [_trim(v, depth + 1) for v in raw[:64]]
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw[:RAW_KEEP])
    if isinstance(raw, str):
        return raw[:RAW_KEEP]
    if raw is None or isinstance(raw, (bool, int, float)):
        return raw
    return repr(raw)[:200]


def _record(source: str, entry_id: str, reason: str, detail: str, raw: Any) -> bytes:
    """One packed record of at most ``RECORD_MAX`` bytes: a bigger one keeps, instead of the
    rejected entry, its size, its SHA-256 and its first ``HEAD_KEEP`` packed bytes."""
    head = {"at": time.time(), "source": source[:200], "entry_id": entry_id[:200], "reason": reason[:200],
            "detail": detail[:1024]}
    record = pack({**head, "raw": _trim(raw)})
    if len(record) <= RECORD_MAX:
        return record
    original = pack(raw)
    return pack({**head, "raw": {"truncated": True, "size": len(original),
                                 "sha256": hashlib.sha256(original).hexdigest(), "head": original[:HEAD_KEEP]}})


class DeadLetters:
    def __init__(self, directory: str, key: str, max_entries: int, client: Callable[[], Client] | None) -> None:
        self.directory = directory
        self.key = key
        self.max_entries = max_entries
        self._client = client
        self._local_count: int | None = None  # files in the directory, counted once then tracked

    def local(self) -> list[dict[str, Any]]:
        """The records kept in the local directory, oldest first."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            with open(os.path.join(self.directory, name), "rb") as fh:
                out.append(unpack_local(fh.read()))
        return out

    def _bound_local(self) -> None:
        """Keep the newest ``max_entries`` files; prune in steps of 10 % (one listdir per step)."""
        if self._local_count is None:
            self._local_count = len(os.listdir(self.directory))
        else:
            self._local_count += 1
        if self._local_count <= self.max_entries + max(1, self.max_entries // 10):
            return
        names = sorted(os.listdir(self.directory))
        extra = names[:max(0, len(names) - self.max_entries)]
        for name in extra:
            try:
                os.unlink(os.path.join(self.directory, name))
            except FileNotFoundError:
                pass
        self._local_count = len(names) - len(extra)
        log.warning("redis_syndic: dead-letter directory %s reached deadletter_max (%d): removed the %d oldest "
                    "record(s)", self.directory, self.max_entries, len(extra))

    def add(self, source: str, entry_id: str, reason: str, detail: str, raw: Any) -> None:
        record = _record(source, entry_id, reason, detail, raw)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            name = f"{time.time_ns():020d}-{reason}.mp"
            fd = os.open(os.path.join(self.directory, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(record)
            self._bound_local()
        except OSError as err:
            log.error("redis_syndic: cannot write dead letter to %s: %s", self.directory, err.strerror)
        if self._client is None:
            return
        try:
            DeadLetterList(self._client(), self.key, self.max_entries).push(record)
        except TransportError as err:
            log.warning("redis_syndic: dead letter kept locally only (%s)", err)

"""The job stream: MoMs append, each DC reads from its own durable cursor.

A stream (not Pub/Sub) keeps entries until trimmed, so a DC that was cut off catches up; a
plain ``XREAD`` from a cursor also works against a read-only replica in the DC.
"""

from __future__ import annotations

from typing import Mapping

import redis

StreamEntry = tuple[str, dict[bytes, bytes]]


def _sid(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def id_millis(stream_id: str) -> int:
    """Milliseconds part of a stream id (``0`` for ``0-0`` or junk)."""
    try:
        return int(stream_id.split("-", 1)[0])
    except ValueError:
        return 0


def stream_id_key(stream_id: str) -> tuple[int, int]:
    """Sort key of a stream id (``ms-seq``): ids compare as numbers, not strings; junk sorts first."""
    try:
        ms, _, seq = stream_id.partition("-")
        return int(ms), int(seq or 0)
    except ValueError:
        return (0, 0)


class JobStream:
    def __init__(self, client: redis.Redis, key: str, maxlen: int) -> None:
        self._client = client
        self.key = key
        self.maxlen = maxlen

    def append(self, entries: list[Mapping[str, bytes]]) -> list[str]:
        """Append entries in one round trip; returns their stream ids."""
        pipe = self._client.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(self.key, dict(fields), maxlen=self.maxlen, approximate=True)
        return [_sid(i) for i in pipe.execute()]

    def read(self, cursor: str, count: int, block_ms: int | None) -> list[StreamEntry]:
        """Entries strictly after ``cursor`` (at most ``count``), waiting up to ``block_ms``."""
        reply = self._client.xread({self.key: cursor}, count=count, block=block_ms)
        if not reply:
            return []
        # redis-py returns [[key, [(id, fields), ...]]] (RESP2) or {key: [[...]]} (RESP3)
        items = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        return [(_sid(entry_id), fields) for entry_id, fields in items]

    def has(self, entry_id: str) -> bool:
        """Whether the entry ``entry_id`` is still in the stream (not lost, not trimmed)."""
        return bool(entry_id) and bool(self._client.xrange(self.key, min=entry_id, max=entry_id, count=1))

    def first_id(self) -> str | None:
        """Id of the oldest entry still in the stream (None when it is empty or missing)."""
        oldest = self._client.xrange(self.key, count=1)
        return _sid(oldest[0][0]) if oldest else None

    def last_id(self) -> str:
        """Id of the newest entry, ``0-0`` when the stream is empty or missing."""
        newest = self._client.xrevrange(self.key, count=1)
        return _sid(newest[0][0]) if newest else "0-0"

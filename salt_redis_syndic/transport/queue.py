"""Reliable list queue for DC -> MoM batches.

DCs ``LPUSH`` whole batches; the MoM moves each one into an in-flight list with
``BLMOVE``/``LMOVE`` and removes it only after every message in it is stored on the MoM.
A MoM that dies mid-batch finds the batch in the in-flight list at its next start.
"""

from __future__ import annotations

import redis


class UplinkQueue:
    def __init__(self, client: redis.Redis, key: str, inflight_key: str) -> None:
        self._client = client
        self.key = key
        self.inflight_key = inflight_key

    def push(self, items: list[bytes]) -> int:
        """Append batches (oldest first) in one round trip; returns the new queue length."""
        if not items:
            return 0
        return int(self._client.lpush(self.key, *items))

    def take(self, max_items: int, block_seconds: float) -> list[bytes]:
        """Move up to ``max_items`` batches into the in-flight list, oldest first.

        Blocks (server side) up to ``block_seconds`` for the first one only.
        """
        first = self._client.blmove(self.key, self.inflight_key, block_seconds, "RIGHT", "LEFT")
        if first is None:
            return []
        items = [first]
        if max_items > 1:
            pipe = self._client.pipeline(transaction=False)
            for _ in range(max_items - 1):
                pipe.lmove(self.key, self.inflight_key, "RIGHT", "LEFT")
            items.extend(i for i in pipe.execute() if i is not None)
        return items

    def done(self, items: list[bytes]) -> None:
        """Forget batches that are fully stored."""
        if not items:
            return
        pipe = self._client.pipeline(transaction=False)
        for item in items:
            pipe.lrem(self.inflight_key, -1, item)
        pipe.execute()

    def inflight(self) -> list[bytes]:
        """Batches taken by an earlier run and never finished, oldest first."""
        return list(reversed(self._client.lrange(self.inflight_key, 0, -1)))

    def length(self) -> int:
        return int(self._client.llen(self.key))

"""The capped dead-letter list in Redis (``<ns>:deadletter``): newest first, bounded.

Redis errors are translated here: callers see :class:`~salt_redis_syndic.errors.TransportError`
only, so the dead-letter writer keeps its record locally and never needs redis-py's exceptions.
"""

from __future__ import annotations

import redis

from ..errors import TransportError
from .connection import TRANSIENT, describe_error


class DeadLetterList:
    def __init__(self, client: redis.Redis, key: str, max_entries: int) -> None:
        self._client = client
        self.key = key
        self.max_entries = max_entries

    def push(self, record: bytes) -> None:
        """Prepend ``record`` and drop the oldest beyond ``max_entries`` (one round trip)."""
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.lpush(self.key, record)
            pipe.ltrim(self.key, 0, self.max_entries - 1)
            pipe.execute()
        except (*TRANSIENT, redis.RedisError) as err:
            raise TransportError(describe_error(err)) from err

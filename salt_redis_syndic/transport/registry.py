"""The set of DC names (``<ns>:dcs``), read raw.

Anyone who can write to Redis can add a member, so members come back as bytes, undecoded:
:func:`salt_redis_syndic.wire.dcnames.registered_dcs` decides which of them are DC names.
"""

from __future__ import annotations

import redis


class DcSet:
    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client = client
        self.key = key

    def members(self) -> list[bytes]:
        """Every member as bytes (a client built with ``decode_responses`` hands back str)."""
        return [m if isinstance(m, bytes) else str(m).encode("utf-8", "surrogateescape")
                for m in self._client.smembers(self.key)]

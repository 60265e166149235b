"""Names read from Redis (members of the DC set): hostile bytes until :func:`read_names` passed them.

A member may be anything a Redis writer chose: not UTF-8, megabytes long, a path, a newline.
Such a member is skipped and counted, never decoded blindly: one ``SADD`` must not stop the
loops that list the DCs (the collector, the estate, ``salt-run redis_syndic.status``): they
read the set through :func:`salt_redis_syndic.wire.status.registered_dcs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..security.names import NAME_RE

MAX_NAME_BYTES = 64  # NAME_RE's own bound; checked before decoding anything


def read_name(raw: Any) -> str | None:
    """``raw`` as a master's name, or None when it is not one (wrong type, too long, not ASCII, bad pattern)."""
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > MAX_NAME_BYTES:
            return None
        try:
            raw = bytes(raw).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(raw, str) or len(raw) > MAX_NAME_BYTES or not NAME_RE.match(raw):
        return None
    return raw


def read_names(raw_members: Iterable[Any]) -> tuple[list[str], int]:
    """``(valid names sorted and unique, how many members were rejected)``."""
    valid: set[str] = set()
    rejected = 0
    for raw in raw_members:
        name = read_name(raw)
        if name is None:
            rejected += 1
        else:
            valid.add(name)
    return sorted(valid), rejected

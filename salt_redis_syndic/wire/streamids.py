"""Redis stream ids: untrusted input, parsed with bounds.

A stream id is ``<ms>-<seq>``, two unsigned 64-bit numbers.  Whoever can write a stream
chooses the ids of the entries it adds (``XADD <key> <id>``), up to
``18446744073709551615-18446744073709551615``: an id says nothing about when a record was
signed, and a reader's cursor must never follow an id it has no reason to believe
(``jobs/stream_position.StreamCursor``).  Every id read from Redis that decides where a loop
reads next goes through :func:`parse_stream_id`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..errors import RejectedEntry

MAX_U64 = 2**64 - 1
_ID_RE = re.compile(r"\A([0-9]{1,20})-([0-9]{1,20})\Z")


class StreamId(NamedTuple):
    """A parsed stream id; tuples compare as Redis orders ids."""

    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


ZERO = StreamId(0, 0)


def parse_stream_id(value: str | bytes) -> StreamId:
    """``<ms>-<seq>`` with both parts within 64 bits; anything else is rejected as ``malformed``."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or len(value) > 41:
        raise RejectedEntry("malformed", "stream id is not a short string")
    match = _ID_RE.match(value)
    if match is None:
        raise RejectedEntry("malformed", f"stream id {value[:41]!r} is not <ms>-<seq>")
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms > MAX_U64 or seq > MAX_U64:
        raise RejectedEntry("malformed", f"stream id {value!r} is out of range")
    return StreamId(ms, seq)

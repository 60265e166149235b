"""Where a DC stands in a signed stream it reads (jobs, key orders): the decisions, no I/O.

Anyone with write access to Redis chooses the ids of the entries they add, up to
``18446744073709551615-…``; so a stream id is untrusted (``wire/streamids``) and the position
is two values:

* the **cursor** (kept on disk, shown in the DC's status): moved only by an entry that
  verified (signed by a trusted key) and whose id is not ahead of this DC's clock by more
  than ``clock_skew``.  A forged entry cannot move it, and neither can a genuine entry
  copied under a far-future id;
* the **read position** (in memory): after the last entry read, whatever it was, so a
  rejected entry is not read again and again.

A read position the stream has never reached (its newest id is lower: the stream was deleted
and recreated, or a far-future entry pushed the position past every id the MoM will write once
the stream is gone) is a reset: :meth:`StreamCursor.check` rewinds to the cursor, or to the
stream's start when the cursor is past it too.  Entries read again are harmless: each job is
claimed once per jid and sub-job in the DC ledger, each key order once per id.

:class:`GapWatch`: the stream now starts after the cursor (entries it had not read were
trimmed by ``stream_maxlen`` or lost by Redis); said once per gap, checked once a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RejectedEntry
from ..wire.streamids import ZERO, StreamId, parse_stream_id


def seconds_ahead(entry_id: StreamId, now: float, skew: float) -> float:
    """How far ``entry_id``'s time is beyond ``now + skew`` (0: not ahead)."""
    return max(0.0, entry_id.ms / 1000.0 - (now + skew))


def poisoned(rej: RejectedEntry, entry_id: StreamId, now: float, skew: float) -> RejectedEntry:
    """The rejection to report for an entry that failed to verify: ``id_ahead`` when its id is in the future too."""
    ahead = seconds_ahead(entry_id, now, skew)
    if not ahead:
        return rej
    return RejectedEntry("id_ahead", f"stream id {entry_id} is {ahead:.0f}s ahead of this DC's clock and the entry "
                                     f"did not verify ({rej.reason}: {rej.detail}); the cursor does not follow it")


@dataclass(frozen=True)
class Passed:
    """What reading one entry did: ``moved`` the cursor, or held it (``ahead``: seconds in the future)."""

    moved: bool
    ahead: float = 0.0


@dataclass(frozen=True)
class Rewind:
    """The read position was past every id of the stream (``last``): read again from ``read_from``."""

    read_from: str
    last: str
    was: str


class StreamCursor:
    """The cursor and the read position of one stream (see the module's docstring)."""

    def __init__(self, cursor: str, skew: float) -> None:
        self.skew = skew
        self._cursor: StreamId | None = _parsed(cursor)
        self._read_from = self._cursor or ZERO

    @property
    def cursor(self) -> str:
        """The durable cursor (``""``: never read this stream)."""
        return str(self._cursor) if self._cursor is not None else ""

    @property
    def read_from(self) -> str:
        return str(self._read_from)

    def start(self, last_id: str, now: float) -> str:
        """A first start reads after the stream's newest entry; the cursor stays within the clock. Returns it."""
        last = parse_stream_id(last_id)
        limit = StreamId(int((now + self.skew) * 1000), 0)
        self._read_from = last
        self._cursor = min(last, limit)
        return str(self._cursor)

    def passed(self, entry_id: str, verified: bool, now: float) -> Passed:
        """Entry ``entry_id`` was read (``verified``: signed by a trusted key); the read position follows it."""
        try:
            sid = parse_stream_id(entry_id)
        except RejectedEntry:
            return Passed(False)
        self._read_from = max(self._read_from, sid)
        ahead = seconds_ahead(sid, now, self.skew)
        if not verified or ahead:
            return Passed(False, ahead)
        self._cursor = sid
        return Passed(True)

    def check(self, last_id: str) -> Rewind | None:
        """After an empty read: ``last_id`` is the stream's newest id (``0-0``: empty or missing)."""
        last = parse_stream_id(last_id)
        if self._read_from <= last:
            return None
        was = self._read_from
        if self._cursor is not None and self._cursor > last:
            self._cursor = ZERO
        self._read_from = self._cursor or ZERO
        return Rewind(str(self._read_from), str(last), str(was))


def _parsed(cursor: str) -> StreamId | None:
    if not cursor:
        return None
    try:
        return parse_stream_id(cursor)
    except RejectedEntry:
        return None


class GapWatch:
    """When to look at the stream's first id, and whether what it shows is a new gap."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._next = 0.0
        self._reported: StreamId | None = None

    def due(self, now: float, force: bool = False) -> bool:
        if now < self._next and not force:
            return False
        self._next = now + self.interval
        return True

    def gap(self, first: str | None, cursor: str) -> bool:
        """True once per gap: the stream's oldest entry ``first`` is after ``cursor``."""
        if first is None:
            return False
        start = parse_stream_id(first)
        if start <= (_parsed(cursor) or ZERO) or start == self._reported:
            return False
        self._reported = start
        return True

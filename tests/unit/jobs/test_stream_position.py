"""jobs/stream_position: where a DC stands in a stream, decided from ids and times."""

from __future__ import annotations

import pytest

from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.jobs.stream_position import GapWatch, Passed, Rewind, StreamCursor, poisoned, seconds_ahead
from salt_redis_syndic.wire.streamids import StreamId

pytestmark = pytest.mark.unit


def test_gap_watch_looks_once_per_interval_unless_forced():
    watch = GapWatch(interval=60.0)
    assert watch.due(100.0)
    assert not watch.due(159.0)
    assert watch.due(159.0, force=True)
    assert watch.due(220.0)


def test_gap_is_reported_once_and_only_after_the_cursor():
    watch = GapWatch()
    assert not watch.gap(None, "1000-0")  # empty stream
    assert not watch.gap("900-0", "1000-0")  # still holds what we read
    assert not watch.gap("1000-0", "1000-0")
    assert watch.gap("2000-0", "1000-0")
    assert not watch.gap("2000-0", "1000-0")  # the same gap
    assert watch.gap("3000-0", "1000-0")  # a new one


def test_ids_compare_as_numbers_not_strings():
    assert GapWatch().gap("10000-0", "9000-5")
    assert not GapWatch().gap("9000-5", "10000-0")


# ----------------------------------------------------------------------------- StreamCursor

NOW = 1_700_000_000.0
SKEW = 60.0
MAX = 18446744073709551615
C = f"{int(NOW * 1000) - 5000}-0"  # a real entry read 5 s ago


def test_a_verified_entry_moves_the_cursor_an_unverified_one_only_the_read_position():
    pos = StreamCursor(C, SKEW)
    assert pos.passed(f"{int(NOW * 1000)}-0", verified=False, now=NOW) == Passed(False, 0.0)
    assert pos.cursor == C and pos.read_from == f"{int(NOW * 1000)}-0"
    assert pos.passed(f"{int(NOW * 1000)}-1", verified=True, now=NOW) == Passed(True)
    assert pos.cursor == pos.read_from == f"{int(NOW * 1000)}-1"


def test_an_entry_ahead_of_the_clock_never_moves_the_cursor_even_verified():
    pos = StreamCursor(C, SKEW)
    within = f"{int((NOW + SKEW) * 1000)}-0"
    assert pos.passed(within, verified=True, now=NOW).moved  # the clock_skew is allowed
    step = pos.passed(f"{int((NOW + SKEW + 120) * 1000)}-0", verified=True, now=NOW)
    assert not step.moved and step.ahead == pytest.approx(120.0)
    assert pos.cursor == within
    pos.passed(f"{MAX}-0", verified=False, now=NOW)
    assert pos.cursor == within and pos.read_from == f"{MAX}-0"


def test_an_unparseable_id_moves_nothing():
    pos = StreamCursor(C, SKEW)
    assert pos.passed("not-an-id", verified=True, now=NOW) == Passed(False)
    assert pos.cursor == pos.read_from == C


def test_no_rewind_while_the_stream_holds_the_read_position():
    pos = StreamCursor(C, SKEW)
    pos.passed(f"{MAX}-0", verified=False, now=NOW)
    assert pos.check(f"{MAX}-0") is None  # the poisoned entry is still there: later ids follow it
    assert pos.check(f"{MAX}-7") is None


def test_a_deleted_poisoned_stream_is_read_again_from_its_start():
    pos = StreamCursor(C, SKEW)
    pos.passed(f"{MAX}-0", verified=False, now=NOW)
    pos.passed(f"{MAX}-1", verified=True, now=NOW)  # a genuine job appended after it
    assert pos.cursor == C
    rewind = pos.check("0-0")  # the operator deleted the stream
    assert rewind == Rewind(read_from="0-0", last="0-0", was=f"{MAX}-1")
    assert pos.read_from == pos.cursor == "0-0"
    fresh = f"{int(NOW * 1000) + 1000}-0"  # the MoM's next job, in the new stream
    assert pos.passed(fresh, verified=True, now=NOW + 1).moved and pos.cursor == fresh


def test_a_recreated_stream_that_still_reaches_the_cursor_is_read_from_the_cursor():
    pos = StreamCursor(C, SKEW)
    pos.passed(f"{MAX}-0", verified=False, now=NOW)
    newest = f"{int(NOW * 1000)}-0"
    assert pos.check(newest) == Rewind(read_from=C, last=newest, was=f"{MAX}-0")
    assert pos.cursor == C


def test_a_cursor_poisoned_before_an_upgrade_is_rewound_at_the_first_empty_read():
    pos = StreamCursor(f"{MAX}-{MAX}", SKEW)
    assert pos.check(f"{int(NOW * 1000)}-0").read_from == "0-0"


def test_a_first_start_reads_after_the_end_and_keeps_the_cursor_within_the_clock():
    pos = StreamCursor("", SKEW)
    assert pos.cursor == ""
    assert pos.start(f"{MAX}-0", NOW) == f"{int((NOW + SKEW) * 1000)}-0"
    assert pos.read_from == f"{MAX}-0"
    assert StreamCursor("", SKEW).start(C, NOW) == C


def test_junk_on_disk_counts_as_never_read():
    assert StreamCursor("garbage", SKEW).cursor == ""


def test_an_unverified_entry_ahead_of_the_clock_is_rejected_as_id_ahead():
    bad = RejectedEntry("unsigned", "no signature")
    rej = poisoned(bad, StreamId(MAX, 0), NOW, SKEW)
    assert rej.reason == "id_ahead" and "unsigned" in rej.detail and str(MAX) in rej.detail
    assert poisoned(bad, StreamId(int(NOW * 1000), 0), NOW, SKEW) is bad
    assert seconds_ahead(StreamId(int((NOW + SKEW) * 1000), 0), NOW, SKEW) == 0.0

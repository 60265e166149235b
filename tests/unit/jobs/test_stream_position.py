"""jobs/stream_position: where a DC stands in a stream, decided from ids and times."""

from __future__ import annotations

import pytest

from salt_redis_syndic.jobs.stream_position import GapWatch

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

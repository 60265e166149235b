"""returns/heartbeat: when the uplink loop's periodic work is due, and the lag its status record shows."""

from __future__ import annotations

import pytest

from salt_redis_syndic.returns.heartbeat import Every, stream_lag

pytestmark = pytest.mark.unit


def test_every_is_due_once_per_interval_unless_forced():
    every = Every(30.0)
    assert every.due(1000.0)
    assert not every.due(1029.9)
    assert every.due(1029.9, force=True)
    assert not every.due(1030.0)
    assert every.due(1059.9)


@pytest.mark.parametrize("last,cursor,lag", [
    ("5000-0", "2000-3", 3.0),
    ("5000-0", "5000-0", 0.0),
    ("0-0", "", 0.0),  # empty stream, a DC that never read it
    ("5000-0", "", 5.0),
    ("2000-0", "5000-0", 0.0),  # never negative
])
def test_stream_lag(last, cursor, lag):
    assert stream_lag(last, cursor) == lag


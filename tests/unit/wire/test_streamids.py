"""wire/streamids: stream ids read from Redis are untrusted; parsed with bounds or rejected."""

from __future__ import annotations

import pytest

from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.wire.streamids import MAX_U64, ZERO, StreamId, parse_stream_id

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("raw,parsed", [
    ("0-0", ZERO),
    ("1700000000000-3", StreamId(1700000000000, 3)),
    (b"5-1", StreamId(5, 1)),
    (f"{MAX_U64}-{MAX_U64}", StreamId(MAX_U64, MAX_U64)),
])
def test_valid_ids(raw, parsed):
    assert parse_stream_id(raw) == parsed
    assert str(parsed) == (raw.decode() if isinstance(raw, bytes) else raw)


@pytest.mark.parametrize("raw", [
    "", "5", "5-", "-5", "a-1", "1-a", "1-2-3", " 1-2", "1-2\n", "+1-2", "1_0-2",
    f"{MAX_U64 + 1}-0", f"0-{MAX_U64 + 1}", "1" * 21 + "-0", "1-" + "9" * 40, "9" * 5000, None, 12,
])
def test_anything_else_is_rejected_as_malformed(raw):
    with pytest.raises(RejectedEntry) as err:
        parse_stream_id(raw)
    assert err.value.reason == "malformed"
    assert len(str(err.value.detail)) < 120  # never echoes a huge value


def test_ids_order_as_redis_orders_them():
    assert parse_stream_id("10-0") > parse_stream_id("9-99") > parse_stream_id("9-5")

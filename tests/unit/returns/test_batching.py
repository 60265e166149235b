"""returns/batching: which spool files one uplink round takes, grouped per MoM, within its bounds."""

from __future__ import annotations

import pytest

from salt_redis_syndic.returns.batching import FILL, SEND_TRIMMED, TRIMMED_WAIT, WAIT, Round, trimmed

pytestmark = pytest.mark.unit


def ret(minion, mom="mom1", t="ret"):
    return {"t": t, "jid": "1", "dc": "east", "id": minion, "load": {}, "mom": mom, "spooled_at": 5.0}


def test_messages_are_grouped_per_mom_in_spool_order_without_spool_fields():
    batch = Round(max_messages=100, max_bytes=10_000)
    assert not batch.add("f1", 10, [ret("a"), ret("b", mom="mom2")])
    assert not batch.add("f2", 10, [ret("c"), ret("d", t="ev")])
    assert batch.taken == ["f1", "f2"]
    assert [m["id"] for m in batch.by_mom["mom1"]] == ["a", "c", "d"]
    assert [m["id"] for m in batch.by_mom["mom2"]] == ["b"]
    assert all("mom" not in m and "spooled_at" not in m for ms in batch.by_mom.values() for m in ms)
    assert (batch.count, batch.size, batch.kinds("ret"), batch.kinds("ev"), batch.kinds("ack")) == (4, 20, 3, 1, 0)


@pytest.mark.parametrize("max_messages,max_bytes,full_after", [(3, 10_000, 2), (100, 15, 2), (2, 10_000, 1)])
def test_the_round_is_full_at_either_bound(max_messages, max_bytes, full_after):
    batch = Round(max_messages, max_bytes)
    fulls = [batch.add(f"f{i}", 10, [ret("a"), ret("b")]) for i in range(3)]
    assert fulls.index(True) == full_after - 1


def test_a_message_without_destination_is_dropped_but_its_file_taken():
    batch = Round(100, 10_000)
    batch.add("f1", 10, [ret("a", mom=""), ret("b", mom=None), ret("c")])
    assert [m["id"] for m in batch.dropped] == ["a", "b"]
    assert batch.count == 1 and batch.taken == ["f1"]


def test_trimmed_return_is_filled_waited_for_then_sent_trimmed():
    msg = {"trimmed": True, "spooled_at": 100.0}
    assert trimmed(msg, {"return": "whole"}, 100.0 + 3600) == FILL
    assert trimmed(msg, None, 100.0 + TRIMMED_WAIT - 1) == WAIT
    assert trimmed(msg, None, 100.0 + TRIMMED_WAIT) == SEND_TRIMMED

"""storing: a return is stored once, only for a minion its DC targeted, as a native load."""

from __future__ import annotations

import pytest

from salt_redis_syndic.errors import StoreFailed
from salt_redis_syndic.returns.storing import (
    Duplicate,
    Refuse,
    Retry,
    StoreRetries,
    Write,
    after_failure,
    never_acked,
    verdict,
)
from salt_redis_syndic.wire.uplink import Return

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
RET = Return(JID, "east", "m1", {"return": True, "id": "spoofed", "jid": "1", "_stamp": "2024-05-01T00:00:00",
                                 "fun": "test.ping"})


def test_a_targeted_return_is_written_as_a_native_load():
    said = verdict(RET, ["m1", "m2"], stored=False)
    assert said == Write({"return": True, "id": "m1", "jid": JID, "fun": "test.ping"})
    assert "_stamp" in RET.load  # the message itself is left alone


def test_a_return_stored_before_is_a_duplicate():
    assert verdict(RET, ["m1"], stored=True) == Duplicate()


@pytest.mark.parametrize("targeted", [[], ["m2"]])
def test_an_untargeted_return_is_refused_even_if_stored_before(targeted):
    said = verdict(RET, targeted, stored=True)
    assert isinstance(said, Refuse) and said.rejection.reason == "untargeted_minion"
    assert "east" in str(said.rejection) and "m1" in str(said.rejection)


def test_an_abandoned_return_says_why():
    rej = never_acked(RET, 600.0)
    assert rej.reason == "no_ack" and "600s" in str(rej) and "m1" in str(rej)


def test_a_store_the_job_cache_did_not_keep_is_retried():
    assert after_failure(RET, StoreFailed("disk full")) == Retry("disk full")


def test_a_load_salt_refuses_is_refused_for_good():
    said = after_failure(RET, StoreFailed("invalid minion id", retryable=False))
    assert isinstance(said, Refuse) and said.rejection.reason == "store_refused"
    assert "invalid minion id" in str(said.rejection) and "east" in str(said.rejection)


def test_retries_wait_longer_each_time_up_to_a_cap():
    retries: StoreRetries[str] = StoreRetries(base=1.0, cap=8.0)
    assert [retries.delay(n) for n in (1, 2, 3, 4, 5, 10)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_retries_come_back_when_due_in_order_once_each():
    retries: StoreRetries[str] = StoreRetries(base=1.0, cap=60.0)
    assert retries.later("b", 2, 100.0) == 2.0  # due at 102
    retries.later("a", 1, 100.0)  # due at 101
    retries.later("c", 1, 101.0)  # due at 102, after b
    assert len(retries) == 3
    assert retries.due(100.5) == []
    assert retries.due(101.0) == ["a"]
    assert retries.due(105.0) == ["b", "c"]
    assert retries.due(200.0) == [] and len(retries) == 0

"""storing: a return is stored once, only for a minion its DC targeted, as a native load."""

from __future__ import annotations

import pytest

from salt_redis_syndic.returns.storing import Duplicate, Refuse, Write, never_acked, verdict
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

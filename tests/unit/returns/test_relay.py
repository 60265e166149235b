"""Three tiers: the middle master's acks grow with the minions below it, and the top waits for them."""

from __future__ import annotations

import os
import queue
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.returns.barrier import Announce, ReleaseBarrier, Released, Store
from salt_redis_syndic.returns.collector import Collector
from salt_redis_syndic.returns.relay import ack_extensions
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.mom_ledger import MomLedger
from salt_redis_syndic.wire.sealed import seal
from salt_redis_syndic.wire.uplink import Ack, Return, decode_batch, encode_batch

from support.fakes import FakeBus, FakeCache, FakeQueue

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
T0 = 1_700_000_000.0
MID = Signer(Ed25519PrivateKey.generate())


def mid_settings(tmp_path, relay=True):
    return load_settings({"id": "mid", "cachedir": str(tmp_path / "mid"), "redis_syndic": {
        "role": "dc", "dc": "mid", "redis_url": "redis://127.0.0.1:1/0", "trusted_keys": [MID.public_pem],
        "relay": relay}})


# ------------------------------------------------------------------ the middle's returner


def test_bottom_lists_become_ack_extensions_to_the_origin(tmp_path):
    events = [
        {"tag": f"syndic/b1/salt/job/{JID}/new", "data": {"jid": JID, "minions": ["b1-m1"], "syndic_id": "b1"}},
        {"tag": f"redis_syndic/job/{JID}/released", "data": {"jid": JID, "minions": ["b2-m1", "b1-m1", "bad/id"]}},
        {"tag": f"salt/job/{JID}/ret/b1-m1", "data": {"return": True}},
    ]
    msgs = ack_extensions(events, mid_settings(tmp_path), lambda jid: "top")
    assert [(m["minions"], m.get("more", False), m["ext"], m["mom"]) for m in msgs] == [
        (["b1-m1"], True, True, "top"), (["b1-m1", "b2-m1"], False, True, "top")]
    assert all(m["t"] == "ack" and m["dc"] == "mid" and m["status"] == "published" for m in msgs)


def test_jobs_of_the_middle_itself_or_unknown_jobs_are_not_extended(tmp_path):
    events = [{"tag": f"redis_syndic/job/{JID}/released", "data": {"minions": ["b1-m1"]}}]
    assert ack_extensions(events, mid_settings(tmp_path), lambda jid: None) == []
    assert ack_extensions(events, mid_settings(tmp_path), lambda jid: "mid") == []
    assert ack_extensions(events, mid_settings(tmp_path, relay=False), lambda jid: "top") == []


def test_extension_flags_are_checked_on_the_wire():
    body = encode_batch("mid", [
        {**Ack(JID, "mid", "published", ["b1-m1"], ext=True).to_wire()},
        {**Ack(JID, "mid", "expired", ext=True).to_wire()},
        {**Ack(JID, "mid", "published").to_wire(), "more": "yes"},
    ])
    batch = decode_batch(body, 1 << 20)
    assert batch.messages == [Ack(JID, "mid", "published", ["b1-m1"], ext=True)]
    assert [rej.reason for rej, _ in batch.rejected] == ["malformed", "malformed"]
    assert "ext" not in Ack(JID, "mid", "published").to_wire()  # old wire form unchanged


# ------------------------------------------------------------------ barrier and ledger on the top


def test_a_growing_list_holds_the_release_until_it_is_complete():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0)
    barrier.published(JID, {"mid", "east"}, T0)
    assert barrier.ack(JID, "east", {"mid", "east"}, T0) == []
    assert barrier.ack(JID, "mid", {"mid", "east"}, T0, more=True) == []
    assert barrier.add_return(JID, "mid", "b1-m1", {"mid", "east"}, T0) == []
    actions = barrier.ack(JID, "mid", {"mid", "east"}, T0 + 1)
    assert actions == [Announce(JID, "east"), Announce(JID, "mid"), Store("b1-m1")]


def test_a_list_that_never_completes_is_released_at_the_deadline():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0)
    barrier.published(JID, {"mid"}, T0)
    barrier.ack(JID, "mid", {"mid"}, T0, more=True)
    assert barrier.tick(T0 + 1) == []
    assert barrier.tick(T0 + 6) == [Announce(JID, "mid")]


def test_release_is_reported_after_the_lists_and_before_the_returns():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0, report_release=True)
    barrier.published(JID, {"b1"}, T0)
    barrier.add_return(JID, "b1", "b1-m1", {"b1"}, T0)
    assert barrier.ack(JID, "b1", {"b1"}, T0) == [Announce(JID, "b1"), Released(JID), Store("b1-m1")]
    # no DC to wait for: released at once
    assert barrier.published("20240501123456789013", set(), T0) == [Released("20240501123456789013")]
    assert ReleaseBarrier(ack_wait=0.0).published(JID, {"b1"}, T0) == []


def test_ledger_merges_extensions_and_reports_what_they_add(tmp_path):
    ledger = MomLedger(str(tmp_path / "mom.sqlite"))
    assert ledger.record_ack(JID, "mid", "published", ["mid-m1"])
    assert ledger.extend_ack(JID, "mid", ["b1-m1", "mid-m1"]) == ["b1-m1"]
    assert ledger.extend_ack(JID, "mid", ["b1-m1"]) == []
    assert ledger.acks(JID) == {"mid": ("published", ["b1-m1", "mid-m1"])}
    ledger.record_ack(JID, "west", "refused", [])
    assert ledger.extend_ack(JID, "west", ["w"]) == []
    ledger.close()


# ------------------------------------------------------------------ the top's collector


def ret(minion):
    return Return(JID, "mid", minion, {"return": True, "id": minion, "jid": JID}).to_wire()


def test_top_announces_the_middle_with_the_minions_below_and_stores_their_returns(tmp_path):
    settings = load_settings({"id": "top", "cachedir": str(tmp_path / "top"), "redis_syndic": {
        "role": "mom", "redis_url": "redis://127.0.0.1:1/0"}})
    bus, cache, published = FakeBus(), FakeCache(), queue.Queue()
    ledger = MomLedger(os.path.join(settings.state_dir, "mom.sqlite"))
    c = Collector(settings, bus, cache, ledger, published,
                  DeadLetters(os.path.join(settings.state_dir, "dl"), "redis_syndic:deadletter", 100, None),
                  Counters(), threading.Event(), keyring=DcKeyring(os.path.join(settings.state_dir, "k"),
                                                                   {"mid": MID.public_pem}), uplink=FakeQueue())
    c.live_dcs = c.known_dcs = {"mid"}
    published.put((JID, T0 + 900, None))

    def send(*msgs):
        c.process(seal(encode_batch("mid", list(msgs)), MID))

    send(Ack(JID, "mid", "published", ["mid-m1"], more=True).to_wire(), ret("mid-m1"))
    assert cache.stored_ids() == [] and bus.events == []  # held: mid's list is still growing
    send(Ack(JID, "mid", "published", ["b1-m1"], ext=True, more=True).to_wire(),
         Ack(JID, "mid", "published", ["b1-m1", "b2-m1"], ext=True).to_wire(), ret("b1-m1"))
    new = [d for t, d in bus.events if t == f"syndic/mid/salt/job/{JID}/new"]
    assert new == [{"jid": JID, "minions": ["b1-m1", "b2-m1", "mid-m1"], "missing": [], "syndic_id": "mid"}]
    assert cache.stored_ids() == ["mid-m1", "b1-m1"]
    # a late DC below: the CLI hears about its minion, then its return is stored
    send(Ack(JID, "mid", "published", ["b3-m1"], ext=True).to_wire(), ret("b3-m1"), ret("x-m1"))
    new = [d["minions"] for t, d in bus.events if t == f"syndic/mid/salt/job/{JID}/new"]
    assert new[-1] == ["b1-m1", "b2-m1", "b3-m1", "mid-m1"]
    assert cache.stored_ids() == ["mid-m1", "b1-m1", "b3-m1"]
    assert "redis_syndic/rejected/untargeted_minion" in [t for t, _ in bus.events]  # x-m1: never acknowledged
    ledger.close()

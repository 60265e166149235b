"""Events forwarded DC -> MoM (bounded, signed in uplink batches) and returns mirrored to every MoM."""

from __future__ import annotations

import os
import queue
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import destinations, load_settings
from salt_redis_syndic.errors import ConfigError
from salt_redis_syndic.events.forwarding import (
    EventBudget,
    EventForwarder,
    may_fire_original,
    unfiltered_globs,
    up_tag,
)
from salt_redis_syndic.returns.collector import Collector
from salt_redis_syndic.returns.spooling import returns_to_spool
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.mom_ledger import MomLedger
from salt_redis_syndic.wire.sealed import seal
from salt_redis_syndic.wire.uplink import Event, decode_batch, encode_batch

from support.fakes import FakeBus, FakeQueue

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
EAST = Signer(Ed25519PrivateKey.generate())


def dc_settings(tmp_path, **extra):
    block = {"role": "dc", "dc": "east", "redis_url": "redis://127.0.0.1:1/0", "trusted_keys": [EAST.public_pem]}
    block.update(extra)
    return load_settings({"id": "east", "cachedir": str(tmp_path), "redis_syndic": block})


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


# ------------------------------------------------------------------------ DC side


def test_only_matching_events_are_spooled_once_per_mom(tmp_path):
    settings = dc_settings(tmp_path, forward_events=["salt/minion/*/start", "custom/*"], moms=["mom1", "mom2"])
    fwd = EventForwarder(settings)
    msgs = fwd.to_spool([
        {"tag": "salt/minion/east-m1/start", "data": {"id": "east-m1"}},
        {"tag": "salt/job/1/ret/x", "data": {"return": True}},
        {"tag": "custom/deploy/done", "data": {"ok": 1}},
        {"tag": "other", "data": {}},
    ])
    assert [(m["tag"], m["mom"]) for m in msgs] == [
        ("salt/minion/east-m1/start", "mom1"), ("salt/minion/east-m1/start", "mom2"),
        ("custom/deploy/done", "mom1"), ("custom/deploy/done", "mom2")]
    assert all(m["t"] == "ev" and m["dc"] == "east" for m in msgs)


def test_forwarding_is_bounded_by_rate_and_size(tmp_path):
    settings = dc_settings(tmp_path, forward_events=["e/*"], moms=["mom1"], forward_events_rate=3,
                           forward_events_max_bytes=1024)
    clock = Clock()
    fwd = EventForwarder(settings, EventBudget(settings.forward_events_rate, clock))
    msgs = fwd.to_spool([{"tag": f"e/{i}", "data": {"i": i}} for i in range(10)])
    assert [m["tag"] for m in msgs] == ["e/0", "e/1", "e/2"]  # a burst of `rate`, the rest dropped
    clock.now = 1.0  # a second later the bucket holds `rate` tokens again
    assert len(fwd.to_spool([{"tag": f"e/{i}", "data": {}} for i in range(5)])) == 3
    clock.now = 5.0
    assert fwd.to_spool([{"tag": "e/big", "data": {"x": "y" * 2000}}]) == []
    assert fwd.to_spool([{"tag": "e/small", "data": {"x": "y"}}])[0]["tag"] == "e/small"


def test_forwarding_needs_the_moms_option(tmp_path):
    with pytest.raises(ConfigError) as info:
        dc_settings(tmp_path, forward_events=["custom/*"])
    assert info.value.option == "moms"
    with pytest.raises(ConfigError) as info:
        dc_settings(tmp_path, mirror_returns=True)
    assert info.value.option == "moms"
    with pytest.raises(ConfigError) as info:
        dc_settings(tmp_path, moms=["ok", "not ok"])
    assert info.value.option == "moms"


def test_globs_the_whitelist_filters_out_are_named(tmp_path):
    settings = dc_settings(tmp_path, forward_events=["salt/minion/*/start", "custom/*"], moms=["mom1"])
    assert unfiltered_globs(settings, {"event_return_whitelist": ["salt/job/*/ret/*", "custom/*"]}) == ["salt/minion/*/start"]
    assert unfiltered_globs(settings, {"event_return_whitelist": ["salt/*", "custom/*"]}) == []
    assert unfiltered_globs(settings, {}) == []


def test_returns_are_mirrored_to_every_mom_with_mirror_returns(tmp_path):
    event = {"tag": f"salt/job/{JID}/ret/east-m1", "data": {"return": True, "id": "east-m1", "jid": JID}}
    plain = dc_settings(tmp_path, moms=["mom1", "mom2"])
    assert [m["mom"] for m in returns_to_spool([event], plain, lambda jid: "mom2")] == ["mom2"]
    mirrored = dc_settings(tmp_path, moms=["mom1", "mom2"], mirror_returns=True)
    assert [m["mom"] for m in returns_to_spool([event], mirrored, lambda jid: "mom2")] == ["mom2", "mom1"]
    assert destinations(mirrored, "mom3") == ["mom3", "mom1", "mom2"]


# ------------------------------------------------------------------------ the wire


def test_events_ride_in_batches_and_bad_ones_are_rejected_alone():
    body = encode_batch("east", [
        Event("east", "salt/minion/east-m1/start", {"id": "east-m1"}).to_wire(),
        {"t": "ev", "dc": "east", "tag": "bad\x00tag", "data": {}},
        {"t": "ev", "dc": "east", "tag": "x" * 513, "data": {}},
        {"t": "ev", "dc": "east", "tag": "ok", "data": ["not", "a", "map"]},
        {"t": "ev", "dc": "west", "tag": "ok", "data": {}},
    ])
    batch = decode_batch(body, 1 << 20)
    assert batch.messages == [Event("east", "salt/minion/east-m1/start", {"id": "east-m1"})]
    assert [rej.reason for rej, _ in batch.rejected] == ["malformed", "malformed", "malformed", "wrong_dc"]


# ------------------------------------------------------------------------ MoM side


def collector(tmp_path, uplink=None, **extra):
    block = {"role": "mom", "redis_url": "redis://127.0.0.1:1/0"}
    block.update(extra)
    settings = load_settings({"id": "mom1", "cachedir": str(tmp_path / "mom"), "redis_syndic": block})
    bus = FakeBus()
    ledger = MomLedger(os.path.join(settings.state_dir, "mom.sqlite"))
    c = Collector(settings, bus, None, ledger, queue.Queue(),
                  DeadLetters(os.path.join(settings.state_dir, "dl"), "redis_syndic:deadletter", 100, None),
                  Counters(), threading.Event(), keyring=DcKeyring(os.path.join(settings.state_dir, "k"),
                                                                   {"east": EAST.public_pem}), uplink=uplink or FakeQueue())
    return c, bus, ledger


def events_batch(*events, signer=EAST):
    return seal(encode_batch("east", [e.to_wire() for e in events]), signer)


def test_mom_fires_forwarded_events_under_a_tag_naming_the_dc(tmp_path):
    uplink = FakeQueue()
    c, bus, ledger = collector(tmp_path, uplink=uplink)
    raw = events_batch(Event("east", "salt/minion/east-m1/start", {"id": "east-m1"}))
    c.process(raw)
    assert bus.events == [("redis_syndic/dc/east/event/salt/minion/east-m1/start",
                           {"dc": "east", "tag": "salt/minion/east-m1/start", "data": {"id": "east-m1"}})]
    assert uplink.done_calls == [raw]
    assert c.counters.snapshot()["events_received"] == 1
    ledger.close()


def test_original_tag_is_fired_only_when_asked_and_never_for_protected_tags(tmp_path):
    c, bus, ledger = collector(tmp_path, forward_events_original_tag=True)
    c.process(events_batch(Event("east", "custom/deploy", {"ok": 1}),
                           Event("east", f"salt/job/{JID}/ret/mom-minion", {"return": "forged"}),
                           Event("east", "syndic/west/salt/job/x/new", {"minions": ["a"]})))
    tags = [t for t, _ in bus.events]
    assert tags == [up_tag("east", "custom/deploy"), "custom/deploy",
                    up_tag("east", f"salt/job/{JID}/ret/mom-minion"), up_tag("east", "syndic/west/salt/job/x/new")]
    assert bus.events[1] == ("custom/deploy", {"ok": 1, "redis_syndic_dc": "east"})
    assert not may_fire_original("redis_syndic/job/1/expired") and may_fire_original("salt/minion/x/start")
    ledger.close()


def test_events_signed_by_another_key_are_rejected(tmp_path):
    c, bus, ledger = collector(tmp_path)
    c.process(events_batch(Event("east", "custom/x", {}), signer=Signer(Ed25519PrivateKey.generate())))
    assert [t for t, _ in bus.events] == ["redis_syndic/rejected/unknown_key"]
    ledger.close()

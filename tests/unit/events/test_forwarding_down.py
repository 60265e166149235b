"""Events forwarded from the MoM down to every DC: filtered, bounded, signed, fired with the MoM named."""

from __future__ import annotations

import os
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.events.forwarding import DownForwarder, EventForwarder
from salt_redis_syndic.jobs.consumer import JobConsumer
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.signing import Signer, Verifier
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.spool import Spool
from salt_redis_syndic.wire.codec import pack
from salt_redis_syndic.wire.jobs import EventsEnvelope, decode_entry, decode_job, encode_events

from support.fakes import FakeBus

pytestmark = pytest.mark.unit

MOM = Signer(Ed25519PrivateKey.generate())
NOW = 1_700_000_000.0


def mom_settings(tmp_path, **extra):
    return load_settings({"id": "mom1", "cachedir": str(tmp_path), "redis_syndic": {
        "role": "mom", "redis_url": "redis://127.0.0.1:1/0", **extra}})


def test_only_matching_events_that_did_not_come_up_are_forwarded_down(tmp_path):
    down = DownForwarder(mom_settings(tmp_path, forward_events_down=["ops/*", "redis_syndic/*"]))
    assert down.offer("ops/notice", {"msg": "x"}) is True
    assert down.offer("other/x", {}) is False
    assert down.offer("redis_syndic/dc/east/event/ops/x", {}) is False  # came up from a DC
    assert down.offer("ops/echo", {"redis_syndic_dc": "east"}) is False  # came up, fired under its tag
    assert down.pending == [("ops/notice", {"msg": "x"})]
    assert DownForwarder(mom_settings(tmp_path)).offer("ops/notice", {}) is False  # off by default


def test_forwarding_down_is_bounded(tmp_path):
    down = DownForwarder(mom_settings(tmp_path, forward_events_down=["ops/*"], forward_events_rate=2,
                                      forward_events_max_bytes=300))
    assert down.offer("ops/big", {"x": "y" * 400}) is False
    assert [down.offer("ops/n", {}) for _ in range(4)] == [True, False, False, False]  # one token left after 'big'


def test_events_that_came_down_never_go_back_up(tmp_path):
    settings = load_settings({"id": "east", "cachedir": str(tmp_path), "redis_syndic": {
        "role": "dc", "dc": "east", "redis_url": "redis://127.0.0.1:1/0", "trusted_keys": [MOM.public_pem],
        "forward_events": ["*"], "moms": ["mom1"]}})
    msgs = EventForwarder(settings).to_spool([{"tag": "redis_syndic/mom/mom1/event/ops/x", "data": {}},
                                              {"tag": "ops/local", "data": {}}])
    assert [m["tag"] for m in msgs] == ["ops/local"]


def test_events_entry_round_trip_and_jobs_only_decoder_refuses_it():
    verifier = Verifier([MOM.public_pem])
    fields = encode_events("mom1", [("ops/notice", {"msg": "x"})], MOM, ttl=900, now=NOW)
    env = decode_entry(fields, verifier, 1 << 20, NOW, 60)
    assert isinstance(env, EventsEnvelope) and env.origin == "mom1" and env.events == [("ops/notice", {"msg": "x"})]
    with pytest.raises(RejectedEntry) as info:
        decode_job(fields, verifier, 1 << 20, NOW, 60)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize("events", [[], "x", [{"tag": "ok", "data": []}], [{"tag": "bad\x00", "data": {}}],
                                    [{"tag": 3, "data": {}}]])
def test_malformed_events_entries_are_rejected(events):
    body = pack({"v": 1, "kind": "events", "origin": "mom1", "issued_at": NOW, "expires_at": NOW + 900,
                 "kid": MOM.key_id, "events": events})
    with pytest.raises(RejectedEntry) as info:
        decode_entry({"b": body, "s": MOM.sign(body), "k": MOM.key_id.encode()}, Verifier([MOM.public_pem]),
                     1 << 20, NOW, 60)
    assert info.value.reason == "malformed"


def test_forged_events_entry_is_rejected():
    fields = encode_events("mom1", [("ops/notice", {})], Signer(Ed25519PrivateKey.generate()), ttl=900, now=NOW)
    with pytest.raises(RejectedEntry) as info:
        decode_entry(fields, Verifier([MOM.public_pem]), 1 << 20, NOW, 60)
    assert info.value.reason == "unknown_key"


class NoPublisher:
    def publish(self, load, origin, timeout):
        raise AssertionError("an events entry must not publish anything")


def test_dc_fires_events_from_the_mom_and_skips_stale_ones(tmp_path):
    settings = load_settings({"id": "east", "cachedir": str(tmp_path), "redis_syndic": {
        "role": "dc", "dc": "east", "redis_url": "redis://127.0.0.1:1/0", "trusted_keys": [MOM.public_pem]}})
    bus = FakeBus()
    ledger = DcLedger(os.path.join(settings.state_dir, "dc.sqlite"))
    consumer = JobConsumer(settings, NoPublisher(), None, bus, Spool(settings.spool_dir, fsync=False), ledger,
                           DeadLetters(os.path.join(settings.state_dir, "dl"), "redis_syndic:deadletter", 100, None),
                           Counters(), threading.Event(), threading.Event())
    consumer.handle("1-0", encode_events("mom1", [("ops/notice", {"msg": "x"})], MOM, ttl=900))
    consumer.handle("2-0", encode_events("mom1", [("ops/old", {})], MOM, ttl=1, now=NOW))
    assert bus.events == [("redis_syndic/mom/mom1/event/ops/notice", {"mom": "mom1", "tag": "ops/notice",
                                                                       "data": {"msg": "x"}})]
    assert consumer.counters.snapshot() == {"events_received": 1}
    ledger.close()

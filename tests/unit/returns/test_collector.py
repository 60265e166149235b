"""Collector.process/execute: DC batches become native-looking returns on the MoM, once each."""

from __future__ import annotations

import os
import queue
import threading
import time

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.errors import StoreFailed
from salt_redis_syndic.returns.collector import Collector
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.mom_ledger import MomLedger
from salt_redis_syndic.wire.sealed import seal
from salt_redis_syndic.wire.uplink import Ack, Return, encode_batch

from support.fakes import FakeBus, FakeCache, FakeQueue

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
# Each DC's uplink key; the MoM's keyring accepts these (pre-seeded, as with the dc_keys option).
DC_KEYS = {dc: Signer(Ed25519PrivateKey.generate()) for dc in ("east", "west")}


class Recorder:
    """One ordered log shared by the fake bus and the fake job cache."""

    def __init__(self):
        self.log: list[tuple] = []

    def kinds(self):
        return [entry[0] for entry in self.log]


class Env:
    def __init__(self, tmp_path):
        self.settings = load_settings({"id": "mom1", "cachedir": str(tmp_path), "redis_syndic": {
            "role": "mom", "redis_url": "redis://127.0.0.1:1/0", "ack_wait": 5}})
        self.rec = Recorder()
        self.bus = FakeBus(log=self.rec.log)
        self.cache = FakeCache(log=self.rec.log)
        self.ledger_path = os.path.join(self.settings.state_dir, "mom.sqlite")
        self.deadletter_dir = os.path.join(self.settings.state_dir, "deadletter")
        self.counters = Counters()
        self.published: queue.Queue = queue.Queue()
        self.ledger = MomLedger(self.ledger_path)
        self.queue = FakeQueue()
        self.collector = self.new_collector()

    def new_collector(self):
        keyring = DcKeyring(os.path.join(self.settings.state_dir, "dc_keys"),
                            {dc: signer.public_pem for dc, signer in DC_KEYS.items()})
        c = Collector(self.settings, self.bus, self.cache, self.ledger, self.published,
                      DeadLetters(self.deadletter_dir, "redis_syndic:deadletter", 100, None),
                      self.counters, threading.Event(), keyring=keyring, uplink=self.queue)
        return c

    def restart(self):
        self.ledger.close()
        self.ledger = MomLedger(self.ledger_path)
        self.collector = self.new_collector()

    def deadletters(self):
        return DeadLetters(self.deadletter_dir, "redis_syndic:deadletter", 100, None).local()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.ledger.close()


def ack(dc="east", minions=("m1", "m2"), status="published", jid=JID, reason=""):
    return Ack(jid, dc, status, list(minions), reason=reason).to_wire()


def ret(minion, dc="east", jid=JID, value=True):
    return Return(jid, dc, minion, {"return": value, "retcode": 0, "success": True, "fun": "test.ping",
                                    "id": minion, "jid": jid, "_stamp": "2024-05-01T00:00:00"}).to_wire()


_seq = iter(range(10**9))


def batch(dc, *msgs, signer=None, seq=None):
    body = encode_batch(dc, list(msgs), now=1_700_000_000.0 + next(_seq), seq=seq)  # distinct bytes per batch
    return seal(body, signer or DC_KEYS[dc])


# ------------------------------------------------------------------------------ happy path


def test_ack_and_returns_become_native_returns_in_order(env):
    raw = batch("east", ack(), ret("m1"), ret("m2", value={"x": 1}))
    env.collector.process(raw)
    kinds = env.rec.kinds()
    # the minion list is out (event + job cache) before the first return is stored
    assert sorted(kinds[:3]) == ["event", "note_dc_minions", "store_minions"]
    assert kinds[3:] == ["store_job", "store_job"]
    assert ("store_minions", JID, ["m1", "m2"], "east") in env.rec.log
    assert ("note_dc_minions", JID, "east", ["m1", "m2"]) in env.rec.log
    (_, tag, data), = [e for e in env.rec.log if e[0] == "event"]
    assert tag == f"syndic/east/salt/job/{JID}/new"
    assert data == {"jid": JID, "minions": ["m1", "m2"], "missing": [], "syndic_id": "east"}
    stored = {e[2]: e[3] for e in env.rec.log if e[0] == "store_job"}
    assert stored["m2"]["return"] == {"x": 1}
    assert stored["m1"]["jid"] == JID and stored["m1"]["id"] == "m1"
    assert "_stamp" not in stored["m1"]
    assert env.ledger.stored(JID) == {"m1": "east", "m2": "east"}
    assert env.queue.done_calls == [raw]
    assert env.counters.snapshot()["returns_stored"] == 2


def test_returns_before_their_ack_are_held_then_stored(env):
    early = batch("east", ret("m1"))
    env.collector.process(early)
    assert env.cache.stored == []
    assert env.queue.done_calls == []  # still in flight: not stored yet
    late = batch("east", ack(), ret("m2"))
    env.collector.process(late)
    assert env.rec.kinds()[3:] == ["store_job", "store_job"]
    assert "store_job" not in env.rec.kinds()[:3]
    assert sorted(env.cache.stored) == [(JID, "m1"), (JID, "m2")]
    assert sorted(env.queue.done_calls) == sorted([early, late])


def test_each_batch_is_finished_exactly_once(env):
    a, b = batch("east", ack(), ret("m1")), batch("east", ret("m2"))
    env.collector.process(a)
    env.collector.process(b)
    assert sorted(env.queue.done_calls) == sorted([a, b])


def test_ack_without_minions_is_announced_without_store_minions(env):
    env.collector.process(batch("east", ack(minions=())))
    assert env.rec.kinds() == ["event"]
    assert env.bus.tags() == [f"syndic/east/salt/job/{JID}/new"]


# -------------------------------------------------------------------------------- idempotence


def test_duplicate_return_is_stored_once(env):
    env.collector.process(batch("east", ack(), ret("m1")))
    env.collector.process(batch("east", ret("m1")))
    env.collector.process(batch("east", ret("m1"), ret("m1")))
    assert env.cache.stored == [(JID, "m1")]
    assert env.counters.snapshot()["returns_duplicate"] == 3
    assert len(env.queue.done_calls) == 3


def test_duplicate_return_after_restart_is_stored_once(env):
    env.collector.process(batch("east", ack(), ret("m1")))
    env.restart()
    env.collector.process(batch("east", ack(), ret("m1")))
    assert env.cache.stored == [(JID, "m1")]


def test_duplicate_ack_is_not_announced_twice(env):
    env.collector.process(batch("east", ack()))
    env.collector.process(batch("east", ack()))
    assert env.bus.tags() == [f"syndic/east/salt/job/{JID}/new"]
    assert env.counters.snapshot()["acks_duplicate"] == 1


def test_later_ack_cannot_widen_the_targeted_set(env):
    env.collector.process(batch("east", ack(minions=("m1",))))
    env.collector.process(batch("east", ack(minions=("m1", "intruder")), ret("intruder")))
    assert env.cache.stored == []
    assert "redis_syndic/rejected/untargeted_minion" in env.bus.tags()


# -------------------------------------------------------------------------------- rejections


def test_return_for_untargeted_minion_is_rejected_not_stored(env):
    raw = batch("east", ack(minions=("m1",)), ret("m1"), ret("m9"))
    env.collector.process(raw)
    assert env.cache.stored == [(JID, "m1")]
    assert not env.ledger.is_stored(JID, "m9")
    events = [e for e in env.rec.log if e[0] == "event" and e[1].startswith("redis_syndic/rejected/")]
    assert [e[1] for e in events] == ["redis_syndic/rejected/untargeted_minion"]
    assert events[0][2]["reason"] == "untargeted_minion" and events[0][2]["what"] == "return"
    (letter,) = env.deadletters()
    assert letter["reason"] == "untargeted_minion"
    assert letter["raw"] == {"jid": JID, "dc": "east", "id": "m9"}
    assert env.counters.snapshot()["rejected_untargeted_minion"] == 1
    assert env.queue.done_calls == [raw]


def test_return_from_a_dc_that_did_not_target_it(env):
    # west acks m1..m2 of *east*? No: west targeted w1; a return for m1 from west is refused.
    env.collector.process(batch("east", ack(minions=("m1",))))
    env.collector.process(batch("west", ack(dc="west", minions=("w1",)), ret("m1", dc="west")))
    assert env.cache.stored == []
    assert "redis_syndic/rejected/untargeted_minion" in env.bus.tags()


def test_bad_batch_is_dead_lettered_and_finished(env):
    raw = b"\xc1 not msgpack"
    env.collector.process(raw)
    assert env.cache.stored == [] and env.rec.kinds() == ["event"]
    assert env.bus.tags() == ["redis_syndic/rejected/malformed"]
    (letter,) = env.deadletters()
    assert letter["reason"] == "malformed" and letter["source"] == "mom:mom1"
    assert letter["raw"] == {"raw": raw}
    assert env.queue.done_calls == [raw]  # not retried forever


@pytest.mark.parametrize("bad,reason", [
    ({**ack(), "dc": "west"}, "wrong_dc"),
    (ret("bad/id"), "malformed"),
])
def test_bad_message_is_dead_lettered_alone(env, bad, reason):
    raw = batch("east", bad, ack(minions=("m1",)), ret("m1"))
    env.collector.process(raw)
    assert [minion for _, minion in env.cache.stored] == ["m1"]  # the good ones went through
    assert f"redis_syndic/rejected/{reason}" in env.bus.tags()
    (letter,) = env.deadletters()
    assert letter["reason"] == reason and letter["source"] == "mom:mom1"
    assert letter["raw"] == bad
    assert env.queue.done_calls == [raw]


def test_forged_unsigned_batch_is_not_stored(env):
    # Built with nothing but the public wire format: no DC key is involved anywhere.
    forged = msgpack.packb({"v": 1, "kind": "batch", "dc": "east", "sent_at": time.time(), "msgs": [
        {"t": "ack", "jid": JID, "dc": "east", "status": "published", "minions": ["db1"], "missing": [],
         "reason": ""},
        {"t": "ret", "jid": JID, "dc": "east", "id": "db1", "load": {"return": "all good", "retcode": 0}}]},
        use_bin_type=True)
    env.collector.process(forged)
    assert env.cache.stored == []
    assert env.bus.tags() == ["redis_syndic/rejected/unsigned"]
    assert env.queue.done_calls == [forged]


def test_batch_signed_by_an_unaccepted_key_is_not_stored(env):
    stranger = Signer(Ed25519PrivateKey.generate())
    raw = batch("east", ack(minions=("m1",)), ret("m1"), signer=stranger)
    env.collector.process(raw)
    assert env.cache.stored == [] and env.bus.tags() == ["redis_syndic/rejected/unknown_key"]


def test_batch_naming_another_dc_than_its_key_is_refused(env):
    # west's key signs a batch that claims to come from east
    raw = batch("east", ack(minions=("m1",)), ret("m1"), signer=DC_KEYS["west"])
    env.collector.process(raw)
    assert env.cache.stored == [] and env.bus.tags() == ["redis_syndic/rejected/wrong_dc"]


def test_tampered_batch_is_not_stored(env):
    raw = batch("east", ack(minions=("m1",)), ret("m1"))
    doc = msgpack.unpackb(raw, raw=False)
    doc["b"] = doc["b"].replace(b"test.ping", b"test.pong")
    tampered = msgpack.packb(doc, use_bin_type=True)
    env.collector.process(tampered)
    assert env.cache.stored == [] and env.bus.tags() == ["redis_syndic/rejected/bad_signature"]


# -------------------------------------------------------------------------- non-run statuses


@pytest.mark.parametrize("status", ["expired", "failed", "rejected"])
def test_ack_of_a_job_not_run_is_reported_not_announced(env, status):
    env.collector.process(batch("east", ack(minions=(), status=status, reason="why")))
    assert env.rec.kinds() == ["event"]
    ((_, tag, data),) = env.rec.log
    assert tag == f"redis_syndic/job/{JID}/{status}/east"
    assert data == {"jid": JID, "dc": "east", "status": status}
    assert env.counters.snapshot()[f"jobs_{status}"] == 1


# ------------------------------------------------------------------------- barrier integration


def test_returns_wait_for_every_live_dc_then_all_lists_go_first(env):
    env.collector.live_dcs = {"east", "west"}
    env.published.put((JID, time.time() + 900))
    env.collector.drain_published()
    assert env.ledger.published_at(JID) is not None
    env.collector.process(batch("east", ack(), ret("m1"), ret("m2")))
    assert env.cache.stored == []
    env.collector.process(batch("west", ack(dc="west", minions=("w1",)), ret("w1", dc="west")))
    kinds = env.rec.kinds()
    last_announce = max(i for i, e in enumerate(env.rec.log) if e[0] in ("store_minions", "note_dc_minions", "event"))
    first_store = kinds.index("store_job")
    assert last_announce < first_store
    assert sorted(t for t in env.bus.tags()) == [f"syndic/east/salt/job/{JID}/new", f"syndic/west/salt/job/{JID}/new"]
    assert sorted(env.cache.stored) == [(JID, "m1"), (JID, "m2"), (JID, "w1")]


def test_silent_dc_is_named_after_ack_wait(env):
    env.collector.live_dcs = {"east", "west"}
    env.published.put((JID, time.time() + 900))
    env.collector.drain_published()
    raw = batch("east", ack(), ret("m1"))
    env.collector.process(raw)
    env.collector.execute(env.collector.barrier.tick(time.time() + 1))
    assert env.cache.stored == []
    env.collector.execute(env.collector.barrier.tick(time.time() + 6))
    assert env.cache.stored == [(JID, "m1")]
    assert env.queue.done_calls == [raw]
    overdue = [e for e in env.rec.log if e[0] == "event" and e[1] == f"redis_syndic/job/{JID}/unacknowledged"]
    assert [e[2] for e in overdue] == [{"jid": JID, "dcs": ["west"]}]


def test_acks_recorded_before_a_restart_still_count(env):
    env.collector.live_dcs = {"east", "west"}
    env.collector.process(batch("east", ack()))
    env.restart()
    env.collector.live_dcs = {"east", "west"}
    env.collector.process(batch("west", ack(dc="west", minions=("w1",))))
    env.collector.process(batch("east", ret("m1")))
    assert env.cache.stored == [(JID, "m1")]


def test_job_published_while_a_dc_is_down_names_that_dc(env):
    env.collector.known_dcs = {"east", "west"}
    env.collector.live_dcs = {"east"}
    env.published.put((JID, time.time() + 900))
    env.collector.drain_published()
    assert f"redis_syndic/job/{JID}/dc_down" in env.bus.tags()
    (event,) = [e[2] for e in env.rec.log if e[0] == "event" and e[1].endswith("/dc_down")]
    assert event == {"jid": JID, "dcs": ["west"]}


def test_job_published_with_every_dc_up_fires_no_dc_down(env):
    env.collector.known_dcs = env.collector.live_dcs = {"east", "west"}
    env.published.put((JID, time.time() + 900))
    env.collector.drain_published()
    assert not [t for t in env.bus.tags() if t.endswith("/dc_down")]


# ------------------------------------------------------------------------ stores that fail


def confirmed_upto(env, dc="east"):
    (confirm,) = [c for c in env.collector.tracker.due(time.time(), force=True) if c.dc == dc] or [None]
    return confirm.done_upto if confirm else None


def test_a_store_the_job_cache_did_not_keep_is_not_confirmed_then_retried(env):
    env.cache.failures.append(StoreFailed("disk full"))
    raw = batch("east", ack(), ret("m1"), ret("m2"), seq=7)
    env.collector.process(raw)
    assert env.cache.stored == [(JID, "m2")]
    assert not env.ledger.is_stored(JID, "m1")  # not marked: a duplicate would be stored, not skipped
    assert env.queue.done_calls == []  # the batch stays in flight
    assert confirmed_upto(env) == 6  # batch 7 is not confirmed: the DC keeps its copy
    assert env.counters.snapshot()["returns_store_failed"] == 1
    env.collector.retry_stores(time.time())  # too early: nothing tried
    assert [a[1] for a in env.cache.attempts] == ["m1", "m2"]
    env.collector.retry_stores(time.time() + env.collector.storer.retries.delay(1))
    assert sorted(env.cache.stored) == [(JID, "m1"), (JID, "m2")]
    assert env.cache.attempts[-1] == (JID, "m1", False)  # a retry does not fire the return's event again
    assert env.ledger.is_stored(JID, "m1")
    assert env.queue.done_calls == [raw] and confirmed_upto(env) == 7
    assert env.counters.snapshot()["returns_stored"] == 2


def test_a_store_failing_again_waits_longer_and_is_never_dropped(env):
    env.cache.failures += [StoreFailed("disk full")] * 3
    env.collector.process(batch("east", ack(), ret("m1")))
    later = time.time()
    for attempt in (1, 2):
        later += env.collector.storer.retries.delay(attempt)
        env.collector.retry_stores(later)
    assert env.cache.stored == [] and len(env.collector.storer.retries) == 1
    assert env.collector.storer.retries.delay(3) > env.collector.storer.retries.delay(1)
    env.collector.retry_stores(later + env.collector.storer.retries.delay(3))
    assert env.cache.stored == [(JID, "m1")] and len(env.collector.storer.retries) == 0
    assert env.counters.snapshot()["returns_store_failed"] == 3


def test_a_return_stored_by_a_duplicate_meanwhile_is_not_stored_again(env):
    env.cache.failures.append(StoreFailed("disk full"))
    first = batch("east", ack(), ret("m1"))
    env.collector.process(first)
    second = batch("east", ret("m1"))
    env.collector.process(second)  # the same return again, stored this time
    env.collector.retry_stores(time.time() + 60)
    assert env.cache.stored == [(JID, "m1")]
    assert env.counters.snapshot()["returns_duplicate"] == 1
    assert sorted(env.queue.done_calls) == sorted([first, second])


def test_a_return_salt_refuses_is_dead_lettered_not_retried(env):
    env.cache.failures.append(StoreFailed("Salt refused the return", retryable=False))
    raw = batch("east", ack(), ret("m1"))
    env.collector.process(raw)
    assert env.cache.stored == [] and len(env.collector.storer.retries) == 0
    assert "redis_syndic/rejected/store_refused" in env.bus.tags()
    (letter,) = env.deadletters()
    assert letter["reason"] == "store_refused" and letter["raw"] == {"jid": JID, "dc": "east", "id": "m1"}
    assert env.queue.done_calls == [raw]

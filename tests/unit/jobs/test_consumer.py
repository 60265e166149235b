"""JobConsumer.handle: verify, dedupe, expiry, publish once, ack upward, dead-letter the rest."""

from __future__ import annotations

import logging
import os
import time

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.salt_adapter import PublishFailed
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.deadletter import RECORD_MAX as DEADLETTER_RECORD_MAX
from salt_redis_syndic.wire.codec import pack
from salt_redis_syndic.wire.jobs import encode_job, make_job
from salt_redis_syndic.wire.subjobs import job_identity

from support.dc_env import JID, Env

pytestmark = pytest.mark.unit

@pytest.fixture(scope="module")
def signer():
    return Signer(Ed25519PrivateKey.generate())


@pytest.fixture
def env(tmp_path, signer):
    e = Env(tmp_path, signer)
    yield e
    e.ledger.close()


# ------------------------------------------------------------------------------- publishing


def test_valid_job_is_published_and_acked(env):
    env.consumer.handle("1-0", env.entry(arg=["x"], metadata={"k": "v"}))
    ((load, origin, timeout),) = env.publisher.calls
    assert load["jid"] == JID and load["fun"] == "test.ping" and load["arg"] == ["x"]
    assert load["metadata"] == {"k": "v"}
    assert origin == "mom1" and timeout == 7.0
    assert env.acks() == [{"t": "ack", "jid": JID, "dc": "east", "status": "published", "minions": ["m1", "m2"],
                           "missing": [], "reason": "", "sub": job_identity(load), "mom": "mom1"}]
    assert env.wake.is_set()
    assert env.ledger.get(JID).status == "published"
    assert env.ledger.get(JID).minions == ["m1", "m2"]
    assert env.counters.snapshot()["jobs_published"] == 1
    assert env.deadletters() == []


def test_job_matching_no_minion_is_acked_with_an_empty_list(env):
    env.publisher.minions = []
    env.consumer.handle("1-0", env.entry())
    assert len(env.publisher.calls) == 1
    (ack,) = env.acks()
    assert ack["status"] == "published" and ack["minions"] == []


def test_same_entry_twice_is_published_once(env):
    entry = env.entry()
    env.consumer.handle("1-0", entry)
    env.consumer.handle("1-0", entry)
    env.consumer.handle("2-0", entry)  # the same job appended again (replay)
    assert len(env.publisher.calls) == 1
    # the first duplicate is acknowledged again (its ack may be what the MoM lacks), the
    # second one within reconcile_interval is not: a replay flood is not an ack flood
    first, again = env.acks()
    assert first == again and first["status"] == "published" and first["minions"] == ["m1", "m2"]
    assert env.counters.snapshot()["jobs_duplicate"] == 2


def test_settled_job_is_acknowledged_again_with_its_status(env):
    env.publisher.failures.append(PublishFailed("AuthorizationError", retryable=False))
    entry = env.entry()
    env.consumer.handle("1-0", entry)
    env.consumer.handle("2-0", entry)
    assert [a["status"] for a in env.acks()] == ["failed", "failed"]
    assert len(env.publisher.calls) == 1


def test_job_issued_before_the_dc_joined_is_skipped_not_run(env):
    env.consumer.joined_at = env.ledger.joined_at()
    old = make_job({"jid": JID, "fun": "test.ping", "arg": [], "tgt": "*", "tgt_type": "glob", "ret": "", "user": "root"},
                   origin="mom", ttl=3600, now=env.consumer.joined_at - 60)
    env.consumer.handle("1-0", encode_job(old, env.signer))
    env.consumer.handle("2-0", encode_job(old, env.signer))
    assert env.publisher.calls == []
    assert [a["status"] for a in env.acks()] == ["skipped", "skipped"]
    assert env.counters.snapshot()["jobs_skipped"] == 1


def test_same_entry_after_restart_is_not_published_again(env):
    entry = env.entry()
    env.consumer.handle("1-0", entry)
    env.restart()
    env.consumer.handle("1-0", entry)
    assert len(env.publisher.calls) == 1
    first, again = env.acks()  # acknowledged again, from the ledger: same minions
    assert first == again


def test_different_jobs_are_each_published(env):
    env.consumer.handle("1-0", env.entry(jid="20240501123456789001"))
    env.consumer.handle("2-0", env.entry(jid="20240501123456789002"))
    assert [c[0]["jid"] for c in env.publisher.calls] == ["20240501123456789001", "20240501123456789002"]
    assert [a["jid"] for a in env.acks()] == ["20240501123456789001", "20240501123456789002"]


# ----------------------------------------------------------------------------------- expiry


def test_expired_job_is_not_published_and_acked_expired(env):
    env.consumer.handle("1-0", env.entry(ttl=10, now=time.time() - 3600))
    assert env.publisher.calls == []
    (ack,) = env.acks()
    assert ack["status"] == "expired" and ack["jid"] == JID and ack["mom"] == "mom1" and ack["minions"] == []
    assert "expired" in ack["reason"]
    assert f"redis_syndic/job/{JID}/expired" in env.bus.tags()
    assert env.ledger.get(JID).status == "expired"
    # and it stays unrun when it comes again
    env.consumer.handle("2-0", env.entry(ttl=10, now=time.time() - 3600))
    assert env.publisher.calls == [] and [a["status"] for a in env.acks()] == ["expired", "expired"]


def test_job_within_clock_skew_of_expiry_still_runs(env):
    env.consumer.handle("1-0", env.entry(ttl=10, now=time.time() - 12))  # 2 s late, skew 5 s
    assert len(env.publisher.calls) == 1


# --------------------------------------------------------------------------------- rejection


def _tampered(env):
    fields = env.entry()
    doc = msgpack.unpackb(fields[b"b"], raw=False)
    doc["load"]["fun"] = "cmd.run"
    fields[b"b"] = pack(doc)
    return fields


@pytest.mark.parametrize("make,reason", [
    (_tampered, "bad_signature"),
    (lambda env: {b"b": env.entry()[b"b"]}, "unsigned"),
    (lambda env: env.entry(signer=Signer(Ed25519PrivateKey.generate())), "unknown_key"),
    (lambda env: {b"junk": b"\x00\x01"}, "malformed"),
    (lambda env: env.entry(now=time.time() + 3600), "from_future"),
])
def test_rejected_entry_is_dead_lettered_announced_and_not_run(env, make, reason):
    env.consumer.handle("7-1", make(env))
    assert env.publisher.calls == []
    assert env.acks() == []
    (letter,) = env.deadletters()
    assert letter["reason"] == reason and letter["entry_id"] == "7-1" and letter["source"] == "dc:east"
    assert isinstance(letter["raw"], dict)
    ((tag, data),) = env.bus.events
    assert tag == f"redis_syndic/rejected/{reason}"
    assert data["reason"] == reason and data["entry_id"] == "7-1" and data["dc"] == "east"
    counters = env.counters.snapshot()
    assert counters["jobs_rejected"] == 1 and counters[f"rejected_{reason}"] == 1
    assert env.ledger.get(JID) is None  # nothing claimed: a valid copy may still come


def test_validity_longer_than_the_dc_remembers_jids_is_refused_so_a_replay_cannot_run_it(env, monkeypatch):
    # The MoM signed a job valid for 3 days; the DC forgets settled jids after a day (its own
    # job_ttl 900 s): a replay after the prune would run it again, so it is refused up front.
    clock = [time.time()]
    monkeypatch.setattr("salt_redis_syndic.jobs.consumer.time.time", lambda: clock[0])
    entry = env.entry(ttl=3 * 86400, now=clock[0])
    env.consumer.handle("1-0", entry)
    clock[0] += 86400 + 3600
    env.consumer.prune()
    env.consumer.handle("1-0", entry)  # the attacker's replay
    assert env.publisher.calls == []
    assert [letter["reason"] for letter in env.deadletters()] == ["validity_too_long"] * 2
    assert env.counters.snapshot()["rejected_validity_too_long"] == 2


def test_validity_within_the_dcs_memory_runs_once_and_survives_the_prune(env, monkeypatch):
    clock = [time.time()]
    monkeypatch.setattr("salt_redis_syndic.jobs.consumer.time.time", lambda: clock[0])
    entry = env.entry(ttl=86400 - 60, now=clock[0])
    env.consumer.handle("1-0", entry)
    clock[0] += 86400 - 30  # not yet expired (skew 5 s), settled a day ago: the jid is kept
    env.consumer.prune()
    env.consumer.handle("1-0", entry)
    assert len(env.publisher.calls) == 1


def test_a_huge_unsigned_key_id_is_bounded_in_the_log_the_event_and_the_dead_letter(env, caplog):
    entry = env.entry()
    entry[b"k"] = b"A" * 20_000_000  # unsigned: anyone who can write to Redis chooses it
    with caplog.at_level(logging.DEBUG):
        env.consumer.handle("1-0", entry)
    assert env.publisher.calls == []
    ((tag, data),) = env.bus.events
    assert tag == "redis_syndic/rejected/malformed" and len(msgpack.packb(data)) < 1024
    assert caplog.records and all(len(r.getMessage()) < 1024 for r in caplog.records)
    files = [os.path.join(env.deadletter_dir, n) for n in os.listdir(env.deadletter_dir)]
    assert len(files) == 1 and os.path.getsize(files[0]) <= DEADLETTER_RECORD_MAX
    (letter,) = env.deadletters()
    assert letter["raw"]["truncated"] is True and len(letter["raw"]["sha256"]) == 64


def test_a_non_ascii_key_id_is_rejected_not_raised(env):
    entry = env.entry()
    entry[b"k"] = b"\xff\xfe"
    env.consumer.handle("1-0", entry)
    assert env.publisher.calls == [] and env.counters.snapshot()["rejected_malformed"] == 1


def test_rejected_copy_does_not_block_the_genuine_job(env):
    env.consumer.handle("1-0", _tampered(env))
    env.consumer.handle("2-0", env.entry())
    assert len(env.publisher.calls) == 1
    assert env.publisher.calls[0][0]["fun"] == "test.ping"


# --------------------------------------------------------------------------- crash recovery


def test_pending_claim_with_a_cached_load_is_acked_not_republished(env):
    env.ledger.claim(JID, "mom1")  # previous run died after pub() before marking
    env.cache.loads[JID] = {"fun": "test.ping", "Minions": ["m2", "m1"]}
    env.restart()
    env.consumer.handle("1-0", env.entry())
    assert env.publisher.calls == []
    (ack,) = env.acks()
    assert ack["status"] == "published" and ack["minions"] == ["m1", "m2"]
    assert env.ledger.get(JID).status == "published"
    assert env.ledger.pending() == []


def test_pending_claim_without_a_cached_load_is_published(env):
    env.ledger.claim(JID, "mom1")
    env.restart()
    env.consumer.handle("1-0", env.entry())
    assert len(env.publisher.calls) == 1
    assert [a["status"] for a in env.acks()] == ["published"]


def test_pending_claim_of_an_expired_job_is_acked_expired(env):
    env.ledger.claim(JID, "mom1")
    env.restart()
    env.consumer.handle("1-0", env.entry(ttl=10, now=time.time() - 3600))
    assert env.publisher.calls == []
    assert [a["status"] for a in env.acks()] == ["expired"]


# ---------------------------------------------------------------------- local master failures


def test_refused_publish_is_acked_failed_and_not_retried(env):
    env.publisher.failures = [PublishFailed("AuthorizationError: nope", retryable=False)]
    env.consumer.handle("1-0", env.entry())
    assert len(env.publisher.calls) == 1
    (ack,) = env.acks()
    assert ack["status"] == "failed" and "nope" in ack["reason"]
    assert env.ledger.get(JID).status == "failed"
    env.consumer.handle("1-0", env.entry())
    assert len(env.publisher.calls) == 1


def test_master_not_up_yet_is_retried_then_published_once(env):
    env.publisher.failures = [PublishFailed("SaltReqTimeoutError", retryable=True)]
    env.consumer.handle("1-0", env.entry())
    assert len(env.publisher.calls) == 2
    assert [a["status"] for a in env.acks()] == ["published"]


def test_stopping_while_retrying_leaves_the_claim_pending(env):
    def unavailable(load, origin, timeout):
        env.publisher.calls.append((dict(load), origin, timeout))
        env.stop.set()  # the master shuts down while the local master is still away
        raise PublishFailed("SaltReqTimeoutError", retryable=True)

    env.publisher.publish = unavailable
    env.consumer.handle("1-0", env.entry())
    assert len(env.publisher.calls) == 1
    assert env.acks() == []
    assert env.ledger.pending() == [(JID, "mom1")]  # resolved by _recover at the next start


class _Stream:
    def __init__(self, first):
        self.first = first

    def first_id(self):
        return self.first


def test_stream_starting_after_the_cursor_is_reported_once(env):
    env.consumer.cursor = "1000-0"
    env.consumer.check_gap(_Stream("900-0"))  # the stream still holds what we read: fine
    env.consumer.check_gap(_Stream(None), force=True)  # empty stream: nothing to say
    assert env.bus.events == []
    env.consumer.check_gap(_Stream("2000-0"), force=True)
    env.consumer.check_gap(_Stream("2000-0"), force=True)  # the same gap: once
    assert [t for t, _ in env.bus.events] == ["redis_syndic/stream/east/gap"]
    assert env.counters.snapshot()["stream_gaps"] == 1


# ------------------------------------------------------------------ cursor poisoning (ids)

MAX = 18446744073709551615


def test_an_unverified_entry_far_ahead_is_rejected_as_id_ahead_and_keeps_the_cursor(env):
    env.consumer.cursor = "1000-0"
    assert env.consumer.handle(f"{MAX}-0", {b"junk": b"x"}) is False
    env.consumer.passed(f"{MAX}-0", False)
    (letter,) = env.deadletters()
    assert letter["reason"] == "id_ahead" and letter["entry_id"] == f"{MAX}-0" and "malformed" in letter["detail"]
    assert [t for t, _ in env.bus.events] == ["redis_syndic/rejected/id_ahead"]
    assert env.counters.snapshot()["rejected_id_ahead"] == 1
    assert env.consumer.cursor == "1000-0" and env.ledger.cursor() != f"{MAX}-0"


def test_a_genuine_job_after_a_poisoned_id_runs_but_does_not_move_the_cursor(env):
    env.consumer.cursor = "1000-0"
    assert env.consumer.handle(f"{MAX}-1", env.entry()) is True
    env.consumer.passed(f"{MAX}-1", True)
    assert len(env.publisher.calls) == 1
    assert env.consumer.cursor == "1000-0"
    assert env.counters.snapshot()["stream_ids_ahead"] == 1


def test_a_verified_entry_moves_the_cursor_on_disk(env):
    entry_id = f"{int(time.time() * 1000)}-0"
    assert env.consumer.handle(entry_id, env.entry()) is True
    env.consumer.passed(entry_id, True)
    assert env.consumer.cursor == env.ledger.cursor() == entry_id
    env.restart()
    assert env.consumer.cursor == entry_id


def test_a_malformed_entry_id_is_rejected(env):
    assert env.consumer.handle("not-an-id", env.entry()) is False
    assert env.publisher.calls == []
    assert env.deadletters()[0]["reason"] == "malformed"


class _Reset:
    key = "redis_syndic:jobs"

    def __init__(self, last):
        self.last = last

    def last_id(self):
        return self.last


def test_a_deleted_stream_is_read_again_from_its_start(env):
    env.consumer.cursor = "1000-0"
    env.consumer.passed(f"{MAX}-0", False)
    env.consumer.check_reset(_Reset(f"{MAX}-0"))  # still there: nothing to do
    assert env.bus.events == []
    env.consumer.check_reset(_Reset("0-0"))
    assert env.consumer.position.read_from == "0-0" and env.ledger.cursor() == "0-0"
    ((tag, data),) = env.bus.events
    assert tag == "redis_syndic/stream/east/reset" and data["was"] == f"{MAX}-0" and data["read_from"] == "0-0"
    assert env.counters.snapshot()["stream_resets"] == 1

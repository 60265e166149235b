"""Batch mode: several sub-jobs under one jid, each run once, their acks merged on the MoM."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.jobs.reconcile import DcView, due_subjob_resends
from salt_redis_syndic.returns.barrier import Announce, ReleaseBarrier, Store
from salt_redis_syndic.security.signing import Signer, Verifier
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.mom_ledger import MomLedger, OutboxJob
from salt_redis_syndic.wire.jobs import decode_job, encode_job, make_job
from salt_redis_syndic.wire.subjobs import (
    EXTENSION,
    WHOLE_JID,
    covers,
    job_identity,
    merge_acks,
    saved_load_is,
)
from salt_redis_syndic.wire.uplink import Ack, decode_batch, encode_batch

from support.dc_env import Env  # the DC engine jobs loop with fakes for Salt

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
SIGNER = Signer(Ed25519PrivateKey.generate())


def sub_batch(minions, **extra):
    """The minion-bound load Salt's batch CLI publishes for one sub-batch (same jid every time)."""
    return {"fun": "cmd.run", "arg": ["echo hi"], "tgt": list(minions), "tgt_type": "list", "jid": JID, "ret": "",
            "user": "root", **extra}


# ------------------------------------------------------------------------------ identity


def test_identity_is_the_same_for_the_same_load_and_differs_per_sub_batch():
    a = job_identity(sub_batch(["m1", "m2"]))
    assert a == job_identity(dict(reversed(list(sub_batch(["m1", "m2"]).items()))))  # key order is irrelevant
    assert a == job_identity(sub_batch(("m1", "m2")))  # a tuple travels as a list
    assert len(a) == 32 and int(a, 16) >= 0
    assert a != job_identity(sub_batch(["m3", "m4"]))
    assert a != job_identity(sub_batch(["m1", "m2"], arg=["echo other"]))
    assert a != job_identity(sub_batch(["m1", "m2"], metadata={"k": "v"}))


def test_identity_computed_by_the_mom_matches_the_one_the_dc_computes_after_decoding():
    load = sub_batch(("m1", "m2"), metadata={"z": 1, "a": (1, 2)}, ret_kwargs={"b": [1, {"c": 2}]})
    job = make_job(load, origin="mom", ttl=60)
    decoded = decode_job(encode_job(job, SIGNER), Verifier([SIGNER.public_pem]), 1 << 20, time.time(), 5)
    assert job_identity(job.load) == job_identity(decoded.load)


def test_ack_carries_its_sub_job_over_the_uplink_and_old_acks_have_none():
    sub = job_identity(sub_batch(["m1"]))
    acks = [Ack(JID, "east", "published", minions=["m1"], sub=sub).to_wire(),
            Ack(JID, "east", "published", minions=["m2"]).to_wire()]
    decoded = decode_batch(encode_batch("east", acks), 1 << 20)
    assert [m.sub for m in decoded.messages] == [sub, ""] and "sub" not in acks[1]
    bad = decode_batch(encode_batch("east", [{**acks[0], "sub": "../x"}]), 1 << 20)
    assert bad.messages == [] and bad.rejected[0][0].reason == "malformed"


# ------------------------------------------------------------------------------ merging


def test_merge_acks_unions_the_published_sub_jobs():
    assert merge_acks([("published", ["m2", "m1"]), ("published", []), ("published", ["m3", "m1"])]) == \
        ("published", ["m1", "m2", "m3"])
    # A sub-batch refused by policy next to a published one: the DC still ran the job.
    assert merge_acks([("refused", []), ("published", ["m1"])]) == ("published", ["m1"])
    assert merge_acks([("expired", []), ("refused", [])]) == ("expired", [])
    assert merge_acks([]) == ("unknown", [])


def test_covers_a_sub_job_by_its_own_ack_or_a_whole_jid_ack():
    assert covers({"a" * 32}, "a" * 32) and not covers({"a" * 32}, "b" * 32)
    assert covers({WHOLE_JID}, "b" * 32)  # an old DC acks the jid as a whole
    assert not covers(set(), "a" * 32)


def test_saved_load_is_the_last_sub_batch_published_by_its_target():
    saved = {**sub_batch(["m3", "m4"]), "Minions": ["m3", "m4"], "kwargs": {}}
    assert saved_load_is(saved, sub_batch(("m3", "m4")))
    assert not saved_load_is(saved, sub_batch(["m1", "m2"]))
    assert not saved_load_is({}, sub_batch(["m3", "m4"]))


# ------------------------------------------------------------------------------ DC ledger


def test_dc_ledger_claims_each_sub_job_once():
    ledger = DcLedger(":memory:")
    a, b = job_identity(sub_batch(["m1"])), job_identity(sub_batch(["m2"]))
    assert ledger.claim(JID, "mom", a) == (True, "pending")
    ledger.mark(JID, "published", ["m1"], sub=a)
    assert ledger.claim(JID, "mom", a) == (False, "published")
    assert ledger.claim(JID, "mom", b) == (True, "pending")
    assert ledger.subs_of(JID) == sorted([a, b]) and ledger.origin_of(JID) == "mom"
    assert ledger.get(JID, a).minions == ["m1"] and ledger.get(JID, b).status == "pending"
    assert ledger.pending() == [(JID, "mom")]


def _old_dc_ledger(path):
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
        CREATE TABLE jobs (jid TEXT PRIMARY KEY, origin TEXT NOT NULL, status TEXT NOT NULL,
            minions TEXT NOT NULL DEFAULT '[]', updated_at REAL NOT NULL);
        CREATE INDEX jobs_updated ON jobs(updated_at);
        """
    )
    db.execute("INSERT INTO jobs VALUES (?, 'mom', 'published', '[\"m1\"]', ?)", (JID, time.time()))
    db.execute("INSERT INTO jobs VALUES ('20240501123456789013', 'mom', 'pending', '[]', ?)", (time.time(),))
    db.commit()
    db.close()


def test_an_existing_dc_ledger_is_upgraded_and_its_jids_stay_claimed(tmp_path):
    path = str(tmp_path / "dc.sqlite")
    _old_dc_ledger(path)
    ledger = DcLedger(path)
    # A jid handled before the upgrade never runs again, whatever its sub-job.
    assert ledger.claim(JID, "mom", job_identity(sub_batch(["m1"]))) == (False, "published")
    assert ledger.claim(JID, "mom", job_identity(sub_batch(["m9"]))) == (False, "published")
    assert ledger.get(JID, "c" * 32).minions == ["m1"] and ledger.get(JID, "c" * 32).sub == WHOLE_JID
    assert ledger.pending() == [("20240501123456789013", "mom")]
    ledger.close()
    again = DcLedger(path)  # a second open (the returner, a restart) does not rebuild again
    assert again.origin_of(JID) == "mom" and again.counts() == {"published": 1, "pending": 1}


# ------------------------------------------------------------------------------ MoM ledger


def test_mom_ledger_merges_the_acks_of_each_sub_job():
    ledger = MomLedger(":memory:")
    a, b = "a" * 32, "b" * 32
    assert ledger.record_ack(JID, "east", "published", ["m1", "m2"], sub=a)
    assert ledger.record_ack(JID, "east", "published", ["m3"], sub=b)
    assert not ledger.record_ack(JID, "east", "published", ["m1", "m2"], sub=a)  # a duplicate ack
    assert ledger.record_ack(JID, "west", "published", [], sub=a)
    assert ledger.acks(JID) == {"east": ("published", ["m1", "m2", "m3"]), "west": ("published", [])}
    assert ledger.ack_rows(JID)["east"][b] == ("published", ["m3"])
    assert ledger.acked_dcs(JID, a) == {"east", "west"} and ledger.acked_dcs(JID, b) == {"east"}
    # A middle master's extension adds minions without acknowledging any sub-job.
    assert ledger.extend_ack(JID, "west", ["w1"]) == ["w1"]
    assert ledger.acks(JID)["west"] == ("published", ["w1"]) and ledger.acked_dcs(JID, b) == {"east"}
    assert EXTENSION in ledger.ack_rows(JID)["west"]


def test_an_existing_mom_ledger_is_upgraded_and_keeps_its_acks_and_outbox(tmp_path):
    path = str(tmp_path / "mom.sqlite")
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE acks (jid TEXT NOT NULL, dc TEXT NOT NULL, status TEXT NOT NULL, minions TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '', at REAL NOT NULL, PRIMARY KEY (jid, dc));
        CREATE TABLE outbox (jid TEXT PRIMARY KEY, entry BLOB NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL,
            entry_id TEXT NOT NULL DEFAULT '', sent_at REAL NOT NULL DEFAULT 0, sends INTEGER NOT NULL DEFAULT 0);
        """
    )
    now = time.time()
    db.execute("INSERT INTO acks VALUES (?, 'east', 'published', ?, '', ?)", (JID, json.dumps(["m1"]), now))
    db.execute("INSERT INTO outbox VALUES (?, ?, ?, ?, '5-0', ?, 1)", (JID, b"entry", now, now + 900, now))
    db.commit()
    db.close()
    ledger = MomLedger(path)
    assert ledger.acks(JID) == {"east": ("published", ["m1"])}
    assert ledger.acked_dcs(JID, "a" * 32) == {"east"}  # an old whole-jid ack covers every sub-job
    (job,) = ledger.open_jobs(now)
    assert (job.jid, job.sub, job.entry_id) == (JID, WHOLE_JID, "5-0") and ledger.outbox_entry(JID) == b"entry"
    # New sub-jobs of the same jid get rows of their own next to the old one.
    ledger.add_outbox([(JID, b"second", now + 900, "b" * 32)])
    ledger.mark_sent([(JID, "6-0", "b" * 32)])
    assert ledger.outbox_entry(JID, "b" * 32) == b"second" and len(ledger.open_jobs(now)) == 2


# ------------------------------------------------------------------------------ release barrier


def test_each_sub_batch_is_a_round_announced_with_its_own_minions():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0)
    live, a, b = {"east", "west"}, "a" * 32, "b" * 32
    barrier.published(JID, live, 0.0, a)
    assert barrier.ack(JID, "east", live, 0.1, sub=a) == []
    assert barrier.ack(JID, "west", live, 0.2, sub=a) == [Announce(JID, "east", a), Announce(JID, "west", a)]
    assert barrier.add_return(JID, "east", "east-m1", live, 0.3) == [Store("east-m1")]
    # The next sub-batch: returns wait until every live DC acknowledged it.
    assert barrier.published(JID, live, 1.0, b) == []
    assert barrier.add_return(JID, "east", "east-m2", live, 1.1) == []
    assert barrier.ack(JID, "east", live, 1.2, sub=b) == []
    assert barrier.ack(JID, "west", live, 1.3, sub=b) == [Announce(JID, "east", b), Announce(JID, "west", b),
                                                         Store("east-m2")]  # every list before any return
    # The same sub-job acknowledged again (a re-sent job): nothing new for the CLI.
    assert barrier.ack(JID, "east", live, 1.4, sub=b) == []


def test_a_round_released_without_a_dc_still_stores_returns_of_dcs_announced_before():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0)
    live, a, b = {"east", "west"}, "a" * 32, "b" * 32
    barrier.published(JID, live, 0.0, a)
    barrier.ack(JID, "east", live, 0.0, sub=a)
    barrier.ack(JID, "west", live, 0.0, sub=a)
    barrier.published(JID, live, 1.0, b)
    barrier.ack(JID, "east", live, 1.0, sub=b)
    assert barrier.add_return(JID, "west", "west-m1", live, 1.1) == []  # held: west has not acked b
    actions = barrier.tick(1.0 + 5.0)
    assert actions[:2] == [Announce(JID, "east", b), Store("west-m1")]
    assert actions[2].dcs == ("west",)  # reported overdue


# ------------------------------------------------------------------------------ reconciliation


def _outbox(sub, entry="5-0"):
    return OutboxJob(jid=JID, created_at=100.0, expires_at=1000.0, entry_id=entry, sent_at=100.0, sends=1, sub=sub)


def test_reconciler_resends_the_sub_job_a_dc_lacks_not_the_whole_jid():
    a, b = "a" * 32, "b" * 32
    acks = {a: {"east", "west"}, b: {"east"}}
    dcs = {dc: DcView(cursor="9-0", spool_depth=0, first_seen=50.0) for dc in ("east", "west")}
    due = due_subjob_resends([_outbox(a, "5-0"), _outbox(b, "6-0")], lambda jid, sub: acks[sub], dcs,
                             lambda entry: True, now=200.0, interval=15)
    assert due == [(JID, b, ["west"])]


# ------------------------------------------------------------------------------ DC consumer


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path, SIGNER)
    yield e
    e.ledger.close()


def _entry(env, minions):
    return env.entry(fun="cmd.run", arg=["echo hi"], tgt=list(minions), tgt_type="list")


def test_each_sub_batch_of_a_jid_is_published_once_and_replays_are_not(env):
    first, second = _entry(env, ["m1", "m2"]), _entry(env, ["m3", "m4"])
    env.consumer.handle("1-0", first)
    env.consumer.handle("2-0", second)
    env.consumer.handle("3-0", first)  # the same signed entry again (a replay, or a MoM re-send)
    env.consumer.handle("4-0", second)
    assert [call[0]["tgt"] for call in env.publisher.calls] == [["m1", "m2"], ["m3", "m4"]]
    subs = [a["sub"] for a in env.acks()]
    assert len(set(subs)) == 2 and subs == subs[:2] * 2  # each replay acknowledged again with its sub-job
    assert env.counters.snapshot()["jobs_duplicate"] == 2


def test_recovery_republishes_a_sub_batch_whose_saved_load_is_an_earlier_one(env):
    env.consumer.handle("1-0", _entry(env, ["m1", "m2"]))
    env.cache.loads[JID] = {**sub_batch(["m1", "m2"]), "Minions": ["m1", "m2"]}
    second = _entry(env, ["m3", "m4"])
    env.ledger.claim(JID, "mom1", job_identity(sub_batch(["m3", "m4"])))  # died before publishing it
    env.restart()
    env.consumer.handle("2-0", second)
    assert [call[0]["tgt"] for call in env.publisher.calls] == [["m1", "m2"], ["m3", "m4"]]


def test_recovery_acks_a_sub_batch_whose_saved_load_is_its_own(env):
    env.consumer.handle("1-0", _entry(env, ["m1", "m2"]))
    env.ledger.claim(JID, "mom1", job_identity(sub_batch(["m3", "m4"])))  # died after publishing it
    env.cache.loads[JID] = {**sub_batch(["m3", "m4"]), "Minions": ["m4", "m3"]}
    env.restart()
    env.consumer.handle("2-0", _entry(env, ["m3", "m4"]))
    assert len(env.publisher.calls) == 1
    assert env.acks()[-1]["minions"] == ["m3", "m4"] and env.acks()[-1]["status"] == "published"
    assert env.ledger.get(JID, job_identity(sub_batch(["m3", "m4"]))).status == "published"

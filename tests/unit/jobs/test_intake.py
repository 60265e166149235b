"""jobs/intake: what a DC does with one verified job, decided from values (no ledger, no Salt)."""

from __future__ import annotations

import logging

import pytest

from salt_redis_syndic.jobs import intake
from salt_redis_syndic.security.policy import Policy
from salt_redis_syndic.wire.jobs import make_job
from salt_redis_syndic.wire.uplink import Ack

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
NOW = 1_700_000_000.0
OPEN = Policy()


def job(fun="test.ping", issued=NOW - 10, ttl=900.0, tgt="*"):
    load = {"fun": fun, "arg": [], "tgt": tgt, "tgt_type": "glob", "jid": JID, "ret": "", "user": "root"}
    return make_job(load, origin="mom1", ttl=ttl, now=issued)


def admit(j, joined_at=0.0, policy=OPEN, now=NOW, skew=5.0):
    return intake.admit(j, "east", "s1", "7-0", now, skew, joined_at, policy)


def test_a_fresh_allowed_job_is_published():
    assert admit(job()) is None


def test_an_expired_job_is_settled_expired_with_its_event():
    settle = admit(job(issued=NOW - 100, ttl=10))
    assert settle.status == "expired" and settle.counter == "jobs_expired" and settle.level == logging.WARNING
    assert settle.ack == Ack(JID, "east", "expired", reason="expired 90s before it reached DC east", sub="s1")
    tag, data = settle.event
    assert tag == f"redis_syndic/job/{JID}/expired"
    assert data == {"jid": JID, "dc": "east", "fun": "test.ping", "expired_for": 90.0, "entry_id": "7-0"}


def test_expiry_allows_the_clock_skew():
    assert admit(job(issued=NOW - 14, ttl=10), skew=5.0) is None  # 4 s late, skew 5 s
    assert admit(job(issued=NOW - 16, ttl=10), skew=5.0).status == "expired"


def test_a_job_issued_before_the_dc_joined_is_skipped():
    settle = admit(job(issued=NOW - 60), joined_at=NOW - 30)
    assert settle.status == "before_join" and settle.ack.status == "skipped" and settle.event is None
    assert settle.counter == "jobs_skipped" and "before DC east joined" in settle.ack.reason
    assert admit(job(issued=NOW - 33), joined_at=NOW - 30) is None  # within the skew


def test_expiry_is_decided_before_joining_and_policy():
    settle = admit(job(fun="cmd.run", issued=NOW - 100, ttl=10), joined_at=NOW, policy=Policy(deny_functions=("cmd.*",)))
    assert settle.status == "expired"


def test_a_job_the_policy_refuses_is_settled_refused():
    settle = admit(job(fun="cmd.run", tgt="web*"), policy=Policy(deny_functions=("cmd.*",)))
    assert settle.status == "refused" and settle.ack.status == "refused" and settle.counter == "jobs_refused"
    assert settle.ack.reason.startswith("DC east policy: ")
    tag, data = settle.event
    assert tag == f"redis_syndic/job/{JID}/refused" and data["tgt"] == "web*" and data["entry_id"] == "7-0"


def test_published_and_failed():
    ok = intake.published(job(), "east", "s1", ["m1", "m2"], relay=True)
    assert ok.status == "published" and ok.ack == Ack(JID, "east", "published", minions=["m1", "m2"], more=True, sub="s1")
    bad = intake.failed(job(), "east", "s1", "x" * 500)
    assert bad.status == "failed" and bad.ack.status == "failed" and len(bad.ack.reason) == 300
    assert bad.counter == "jobs_failed" and bad.level == logging.ERROR


def test_recovered_from_the_saved_load_of_this_job():
    j = job()
    saved = {"fun": "test.ping", "Minions": ["m2", "m1"]}
    settle = intake.recovered(j, "east", "s1", saved, ["s1"], relay=False)
    assert settle.status == "published" and settle.ack.minions == ["m1", "m2"] and settle.counter is None


def test_not_recovered_without_a_saved_load():
    assert intake.recovered(job(), "east", "s1", {}, ["s1"], relay=False) is None
    assert intake.recovered(job(), "east", "s1", None, ["s1"], relay=False) is None


def test_a_saved_load_of_another_sub_job_is_not_this_ones():
    saved = {"fun": "test.ping", "tgt": ["m9"], "tgt_type": "list", "Minions": ["m9"]}
    assert intake.recovered(job(), "east", "s1", saved, ["s0", "s1"], relay=False) is None


@pytest.mark.parametrize("status,acked,reason", [
    ("published", "published", ""),
    ("before_join", "skipped", "before_join on DC east (acknowledged again)"),
    ("expired", "expired", "expired on DC east (acknowledged again)"),
    ("refused", "refused", "refused on DC east (acknowledged again)"),
])
def test_again_acks_the_recorded_status(status, acked, reason):
    ack = intake.again(job(), "east", status, "", ["m1"], relay=False)
    assert ack.status == acked and ack.reason == reason and ack.sub == ""
    assert ack.minions == (["m1"] if status == "published" else [])


def test_reack_throttle_once_per_interval_per_sub_job():
    throttle = intake.ReackThrottle(interval=60.0)
    assert throttle.due(JID, "a", 0.0)
    assert not throttle.due(JID, "a", 59.0)
    assert throttle.due(JID, "b", 59.0)  # another sub-job of the same jid
    assert throttle.due(JID, "a", 60.0)


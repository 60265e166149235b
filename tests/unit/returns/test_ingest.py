"""Ingest: the barrier's actions for each ack and return of an uplink batch; a batch finished once."""

from __future__ import annotations

import pytest

from salt_redis_syndic.returns.barrier import Announce, ReleaseBarrier, Store
from salt_redis_syndic.returns.ingest import Batch, HeldReturn, Ingest, LedgerFacts, forwarded
from salt_redis_syndic.wire.uplink import Ack, Event, Return

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
T0 = 1000.0
LIVE = {"east", "west"}
KNOWN = LedgerFacts()  # the barrier knew the jid: nothing read from the ledger


def ingest(**kw):
    return Ingest(ReleaseBarrier(ack_wait=5.0, **kw))


def ret(minion, dc="east"):
    return Return(JID, dc, minion, {"return": True})


def stored(actions):
    return [a.item.ret.minion for a in actions if isinstance(a, Store)]


def test_a_published_job_waits_for_every_live_dc():
    ing, batch = ingest(), Batch(b"raw")
    ing.barrier.published(JID, LIVE, T0)
    assert not ing.needs_acks_before(JID)
    assert ing.message(Ack(JID, "east", "published", ["m1"]), batch, KNOWN, LIVE, T0) == []
    assert ing.message(ret("m1"), batch, KNOWN, LIVE, T0) == []
    assert batch.remaining == 1  # held: the batch stays in flight
    actions = ing.message(Ack(JID, "west", "published", ["w1"]), batch, KNOWN, LIVE, T0)
    assert actions[:2] == [Announce(JID, "east"), Announce(JID, "west")]
    assert stored(actions) == ["m1"]
    (store,) = actions[2:]
    assert isinstance(store.item, HeldReturn) and store.item.batch is batch


def test_a_jid_this_mom_never_published_waits_only_for_its_sender():
    ing = ingest()
    assert ing.needs_acks_before(JID)
    facts = LedgerFacts(acked_before=set(), published=False)
    actions = ing.message(Ack(JID, "east", "published", ["m1"]), Batch(b"raw"), facts, LIVE, T0)
    assert actions == [Announce(JID, "east")]  # west is live, but this jid is not waited on


def test_after_a_restart_a_published_jid_counts_the_acks_recorded_before():
    ing = ingest()
    facts = LedgerFacts(acked_before={"east"}, published=True)
    actions = ing.message(Ack(JID, "west", "published", ["w1"]), Batch(b"raw"), facts, LIVE, T0)
    assert sorted(a.dc for a in actions if isinstance(a, Announce)) == ["east", "west"]


def test_a_published_jid_after_a_restart_still_waits_for_every_live_dc():
    ing = ingest()
    facts = LedgerFacts(acked_before=set(), published=True)
    assert ing.message(Ack(JID, "west", "published", ["w1"]), Batch(b"raw"), facts, LIVE, T0) == []


def test_a_sub_job_ack_is_announced_with_its_sub_job():
    ing = ingest()
    ing.barrier.published(JID, {"east"}, T0, "s1")
    actions = ing.message(Ack(JID, "east", "published", ["m1"], sub="s1"), Batch(b"raw"), KNOWN, {"east"}, T0)
    assert actions == [Announce(JID, "east", "s1")]


def test_an_extension_that_adds_minions_is_announced_again():
    ing = ingest()
    ing.barrier.published(JID, {"mid"}, T0)
    first = Ack(JID, "mid", "published", ["a"], more=True)
    assert ing.message(first, Batch(b"raw"), KNOWN, {"mid"}, T0) == []  # its list is still growing
    ext = Ack(JID, "mid", "published", ["a", "b"], ext=True, more=True)
    assert ing.message(ext, Batch(b"raw"), LedgerFacts(extended=True), {"mid"}, T0) == []  # not announced yet
    last = Ack(JID, "mid", "published", ["a", "b", "c"], ext=True)
    assert ing.message(last, Batch(b"raw"), LedgerFacts(extended=True), {"mid"}, T0) == [Announce(JID, "mid")]
    # announced: a later extension that adds minions is announced again, one that adds none is not
    assert ing.message(last, Batch(b"raw"), LedgerFacts(extended=True), {"mid"}, T0) == [Announce(JID, "mid")]
    assert ing.message(last, Batch(b"raw"), LedgerFacts(extended=False), {"mid"}, T0) == []


def test_a_batch_is_settled_by_its_last_return_and_finished_once():
    batch = Batch(b"raw", remaining=2)
    assert not batch.settle()
    assert batch.settle()
    assert batch.finish() and not batch.finish()


def test_forwarded_event_under_its_dc_and_its_own_tag_when_allowed():
    event = Event("east", "custom/thing", {"x": 1})
    assert forwarded(event, original_tag=False) == [
        ({"dc": "east", "tag": "custom/thing", "data": {"x": 1}}, "redis_syndic/dc/east/event/custom/thing")]
    assert forwarded(event, original_tag=True)[1] == ({"x": 1, "redis_syndic_dc": "east"}, "custom/thing")


def test_a_protected_tag_is_never_fired_as_itself():
    event = Event("east", f"salt/job/{JID}/ret/m1", {"return": "forged"})
    assert [tag for _, tag in forwarded(event, original_tag=True)] == [f"redis_syndic/dc/east/event/salt/job/{JID}/ret/m1"]

"""ReleaseBarrier: the CLI learns every live DC's minion list before it sees any return."""

from __future__ import annotations

import pytest

from salt_redis_syndic.returns.barrier import (
    Abandon,
    Announce,
    Overdue,
    ReleaseBarrier,
    Store,
)

pytestmark = pytest.mark.unit

JID = "20240501123456789012"
T0 = 1000.0
LIVE = {"east", "west"}


def stores(actions):
    return [a.item for a in actions if isinstance(a, Store)]


def announces(actions):
    return [a.dc for a in actions if isinstance(a, Announce)]


def kinds(actions):
    return [type(a).__name__ for a in actions]


@pytest.fixture
def barrier():
    b: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0, forget_after=60.0)
    b.published(JID, LIVE, T0)
    return b


def test_returns_held_until_every_live_dc_acked(barrier):
    assert barrier.add_return(JID, "east", "east-m1", LIVE, T0 + 0.1) == []
    assert barrier.ack(JID, "east", LIVE, T0 + 0.2) == []
    assert barrier.add_return(JID, "east", "east-m2", LIVE, T0 + 0.3) == []
    assert barrier.held_count() == 2
    actions = barrier.ack(JID, "west", LIVE, T0 + 0.4)
    assert sorted(announces(actions)) == ["east", "west"]
    assert stores(actions) == ["east-m1", "east-m2"]
    assert barrier.held_count() == 0


def test_every_announce_precedes_any_store(barrier):
    barrier.add_return(JID, "west", "west-m1", LIVE, T0)
    barrier.add_return(JID, "east", "east-m1", LIVE, T0)
    barrier.ack(JID, "west", LIVE, T0)
    barrier.add_return(JID, "west", "west-m2", LIVE, T0)
    actions = barrier.ack(JID, "east", LIVE, T0)
    assert kinds(actions) == ["Announce", "Announce", "Store", "Store", "Store"]
    assert sorted(stores(actions)) == ["east-m1", "west-m1", "west-m2"]
    # each DC's returns keep their arrival order
    assert [s for s in stores(actions) if s.startswith("west")] == ["west-m1", "west-m2"]


def test_return_after_release_is_stored_at_once(barrier):
    barrier.ack(JID, "east", LIVE, T0)
    barrier.ack(JID, "west", LIVE, T0)
    assert barrier.add_return(JID, "east", "east-m9", LIVE, T0 + 1) == [Store("east-m9")]
    assert barrier.held_count() == 0


def test_no_release_before_deadline(barrier):
    barrier.ack(JID, "east", LIVE, T0)
    barrier.add_return(JID, "east", "east-m1", LIVE, T0)
    assert barrier.tick(T0 + 4.9) == []
    assert barrier.held_count() == 1


def test_deadline_releases_with_overdue_naming_missing_dcs():
    live = {"east", "west", "north"}
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0)
    barrier.published(JID, live, T0)
    barrier.ack(JID, "east", live, T0 + 1)
    barrier.add_return(JID, "east", "east-m1", live, T0 + 1)
    barrier.add_return(JID, "west", "west-m1", live, T0 + 1)  # west returns, but never acks
    actions = barrier.tick(T0 + 5.0)
    assert actions[0] == Announce(JID, "east")
    assert stores(actions) == ["east-m1"]
    assert [a for a in actions if isinstance(a, Overdue)] == [Overdue(JID, ("north", "west"))]
    assert kinds(actions).index("Overdue") > kinds(actions).index("Store")
    # a released job is not released (nor reported overdue) a second time
    assert barrier.tick(T0 + 10) == []


def test_deadline_with_every_dc_acked_has_no_overdue(barrier):
    barrier.ack(JID, "east", LIVE, T0)
    barrier.ack(JID, "west", LIVE, T0)
    assert barrier.tick(T0 + 100) == []


def test_late_ack_announces_immediately_then_stores_its_held_returns(barrier):
    barrier.ack(JID, "east", LIVE, T0)
    barrier.add_return(JID, "west", "west-m1", LIVE, T0 + 1)
    barrier.tick(T0 + 6)  # released without west
    assert barrier.add_return(JID, "west", "west-m2", LIVE, T0 + 7) == []  # still held: no list yet
    actions = barrier.ack(JID, "west", LIVE, T0 + 8)
    assert actions == [Announce(JID, "west"), Store("west-m1"), Store("west-m2")]
    assert barrier.add_return(JID, "west", "west-m3", LIVE, T0 + 9) == [Store("west-m3")]


def test_returns_of_a_dc_whose_ack_never_came_stay_held_until_hold_max(barrier):
    barrier.ack(JID, "east", LIVE, T0)
    barrier.add_return(JID, "west", "west-m1", LIVE, T0)
    barrier.tick(T0 + 6)
    for t in (T0 + 100, T0 + barrier.hold_max - 1):
        assert barrier.tick(t) == []
    assert barrier.held_count() == 1
    abandoned = barrier.tick(T0 + barrier.hold_max + 1)
    assert [a.item for a in abandoned if isinstance(a, Abandon)] == ["west-m1"]
    assert not stores(abandoned) and barrier.held_count() == 0


def test_a_late_ack_within_hold_max_still_stores(barrier):
    barrier.ack(JID, "east", LIVE, T0)
    barrier.add_return(JID, "west", "west-m1", LIVE, T0)
    barrier.tick(T0 + 6)
    actions = barrier.ack(JID, "west", LIVE, T0 + barrier.hold_max - 1)
    assert announces(actions) == ["west"] and stores(actions) == ["west-m1"]


def test_duplicate_ack_is_announced_once(barrier):
    barrier.ack(JID, "east", LIVE, T0)
    first = barrier.ack(JID, "west", LIVE, T0)
    assert sorted(announces(first)) == ["east", "west"]
    assert barrier.ack(JID, "west", LIVE, T0 + 1) == []
    assert barrier.ack(JID, "east", LIVE, T0 + 1) == []


def test_acks_restored_from_the_ledger_count():
    # After a MoM restart the barrier is empty; the ledger knows east already acked.
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0)
    assert barrier.add_return(JID, "west", "west-m1", LIVE, T0, acked={"east"}) == []
    actions = barrier.ack(JID, "west", LIVE, T0, acked={"east"})
    assert sorted(announces(actions)) == ["east", "west"]
    assert stores(actions) == ["west-m1"]


def test_restored_acks_alone_release_on_the_first_return():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0)
    actions = barrier.add_return(JID, "east", "east-m1", LIVE, T0, acked={"east", "west"})
    assert kinds(actions) == ["Announce", "Announce", "Store"]
    assert stores(actions) == ["east-m1"]


def test_restored_acks_are_ignored_for_a_known_job(barrier):
    # `acked=` seeds a job the barrier did not know; it is not a way to ack later.
    barrier.add_return(JID, "east", "east-m1", LIVE, T0, acked={"east", "west"})
    assert barrier.held_count() == 1


def test_dc_not_live_at_publish_time_is_not_waited_for():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0)
    barrier.published(JID, {"east"}, T0)
    actions = barrier.ack(JID, "east", {"east", "west"}, T0)
    assert announces(actions) == ["east"]
    # a straggler DC is announced as soon as it acks
    assert announces(barrier.ack(JID, "west", {"east", "west"}, T0 + 1)) == ["west"]


def test_unknown_jid_uses_live_dcs_when_first_seen():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0)
    assert barrier.ack(JID, "east", LIVE, T0) == []  # west is live: wait for it
    assert sorted(announces(barrier.ack(JID, "west", LIVE, T0))) == ["east", "west"]


def test_no_live_dcs_releases_on_first_ack():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0)
    barrier.published(JID, set(), T0)
    assert announces(barrier.ack(JID, "east", set(), T0)) == ["east"]


def test_jobs_are_independent(barrier):
    other = "20240501123456789013"
    barrier.published(other, LIVE, T0)
    barrier.ack(JID, "east", LIVE, T0)
    barrier.ack(other, "west", LIVE, T0)
    barrier.add_return(other, "west", "o-west-m1", LIVE, T0)
    assert barrier.ack(JID, "west", LIVE, T0) == [Announce(JID, "east"), Announce(JID, "west")]
    assert barrier.held_count() == 1
    actions = barrier.ack(other, "east", LIVE, T0)
    assert [a.jid for a in actions if isinstance(a, Announce)] == [other, other]
    assert stores(actions) == ["o-west-m1"]


def test_zero_ack_wait_releases_at_next_tick():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=0.0)
    barrier.published(JID, LIVE, T0)
    barrier.add_return(JID, "east", "east-m1", LIVE, T0)
    barrier.ack(JID, "east", LIVE, T0)
    actions = barrier.tick(T0)
    assert stores(actions) == ["east-m1"]
    assert Overdue(JID, ("west",)) in actions


def test_forget_after_cleans_settled_jobs(barrier):
    barrier.ack(JID, "east", LIVE, T0)
    barrier.ack(JID, "west", LIVE, T0)
    barrier.tick(T0 + 60)  # not yet: idle for exactly forget_after
    assert JID in barrier._jobs
    barrier.tick(T0 + 61)
    assert JID not in barrier._jobs
    # a straggling duplicate after forgetting starts a fresh wait rather than storing blindly
    assert barrier.add_return(JID, "east", "east-m1", LIVE, T0 + 62) == []


def test_forget_after_counts_from_last_activity(barrier):
    barrier.ack(JID, "east", LIVE, T0)
    barrier.ack(JID, "west", LIVE, T0)
    barrier.add_return(JID, "east", "east-m1", LIVE, T0 + 50)
    barrier.tick(T0 + 61)
    assert JID in barrier._jobs
    barrier.tick(T0 + 111)
    assert JID not in barrier._jobs


def test_jobs_with_held_returns_are_not_forgotten_before_hold_max():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=5.0, forget_after=1.0, hold_max=10_000.0)
    barrier.ack(JID, "east", LIVE, T0)
    barrier.add_return(JID, "west", "west-m1", LIVE, T0)
    barrier.tick(T0 + 6)
    barrier.tick(T0 + 9_000)
    assert JID in barrier._jobs and barrier.held_count() == 1


def test_unreleased_jobs_are_not_forgotten_before_release():
    barrier: ReleaseBarrier[str] = ReleaseBarrier(ack_wait=1000.0, forget_after=1.0)
    barrier.published(JID, LIVE, T0)
    barrier.tick(T0 + 500)
    assert JID in barrier._jobs

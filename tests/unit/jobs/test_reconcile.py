"""Reconciliation decisions: which jobs the MoM appends again, which batches a DC pushes again."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.salt_adapter.publish import publish_load
from salt_redis_syndic.jobs.reconcile import DcView, due_resends
from salt_redis_syndic.returns.confirm import ResendPlanner, UplinkTracker
from salt_redis_syndic.security.signing import Signer, Verifier
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.mom_ledger import MomLedger, OutboxJob
from salt_redis_syndic.transport.stream import stream_id_key
from salt_redis_syndic.wire.codec import pack
from salt_redis_syndic.wire.confirm import Confirm, decode_confirm, read_confirm
from salt_redis_syndic.wire.sealed import seal

from support.fakes import FakeBus, FakeCache

pytestmark = pytest.mark.unit

MOM_KEY = Signer(Ed25519PrivateKey.generate())
OTHER_KEY = Signer(Ed25519PrivateKey.generate())


# ------------------------------------------------------------------ MoM: uplink tracker


def test_tracker_confirms_contiguous_batches_and_lists_taken_ones_above():
    t = UplinkTracker("mom")
    for seq in (5, 6, 7):
        t.taken("east", seq)
    t.done("east", 5)
    t.done("east", 7)  # 6 still held (returns waiting for an ack)
    (c,) = t.confirms(now=1.0)
    assert (c.mom, c.dc, c.done_upto, c.max_seen, c.taken) == ("mom", "east", 5, 7, (6, 7))
    assert t.confirms(now=2.0) == []  # nothing changed
    t.done("east", 6)
    (c,) = t.confirms(now=3.0)
    assert (c.done_upto, c.taken) == (7, ())
    assert [x.dc for x in t.confirms(now=4.0, all_dcs=True)] == ["east"]
    assert t.snapshot() == {"east": (7, 7)}


def test_tracker_resumes_from_saved_state_and_ignores_old_batches():
    t = UplinkTracker("mom", {"east": (10, 12)})
    t.done("east", 9)  # already confirmed long ago
    t.taken("east", 11)
    t.done("east", 11)
    (c,) = t.confirms(now=1.0)
    assert (c.done_upto, c.max_seen) == (11, 12)


# --------------------------------------------------------------------- DC: resend planner


def confirm(done, seen, taken=(), at=100.0):
    return Confirm("mom", "east", done, seen, tuple(taken), at)


def test_planner_resends_a_gap_below_what_the_mom_has_seen_once_per_mom_interval():
    p = ResendPlanner(interval=10)
    sent = [(3, 0.0), (4, 0.0), (5, 0.0), (6, 0.0)]
    plan = p.plan("mom", sent, confirm(2, 6, taken=[3, 5, 6], at=100.0), now=50.0)
    assert (plan.confirmed_upto, plan.resend, plan.probe) == (2, [4], False)
    # the MoM's clock has not moved by a full interval: no second copy yet
    assert p.plan("mom", sent, confirm(2, 6, taken=[3, 5, 6], at=105.0), now=60.0).resend == []
    assert p.plan("mom", sent, confirm(2, 6, taken=[3, 5, 6], at=111.0), now=70.0).resend == [4]


def test_planner_waits_for_young_batches_and_probes_when_the_newest_are_unseen():
    p = ResendPlanner(interval=10)
    sent = [(7, 95.0), (8, 50.0)]
    plan = p.plan("mom", sent, confirm(6, 6), now=100.0)
    assert plan.resend == [] and plan.probe  # 8 is old and unseen: make a gap visible
    assert not p.plan("mom", sent, confirm(6, 6), now=105.0).probe  # one probe per interval
    assert p.plan("mom", sent, confirm(6, 6), now=111.0).probe


def test_planner_without_a_confirmation_does_nothing():
    plan = ResendPlanner(10).plan("mom", [(1, 0.0)], None, now=1000.0)
    assert (plan.confirmed_upto, plan.resend, plan.probe) == (0, [], False)


# ------------------------------------------------------------------ signed confirmations


def test_confirmation_round_trip_and_hostile_variants():
    c = Confirm("mom", "east", 3, 9, (5, 9), 12.5)
    raw = seal(c.encode(), MOM_KEY)
    assert read_confirm(raw, Verifier([MOM_KEY.public_pem]), "mom", "east") == c
    with pytest.raises(RejectedEntry) as err:
        read_confirm(seal(c.encode(), OTHER_KEY), Verifier([MOM_KEY.public_pem]), "mom", "east")
    assert err.value.reason == "unknown_key"
    with pytest.raises(RejectedEntry) as err:
        read_confirm(raw, Verifier([MOM_KEY.public_pem]), "mom", "west")  # copied under another DC's key
    assert err.value.reason == "wrong_dc"
    for bad in ({"v": 1, "kind": "confirm", "mom": "mom", "dc": "east", "done_upto": -1, "max_seen": 0, "taken": [], "at": 1},
                {"v": 1, "kind": "confirm", "mom": "mom", "dc": "east", "done_upto": 1, "max_seen": 0, "taken": "x", "at": 1},
                {"v": 1, "kind": "confirm", "mom": "mom", "dc": "east", "done_upto": True, "max_seen": 0, "taken": [], "at": 1},
                [1, 2]):
        with pytest.raises(RejectedEntry):
            decode_confirm(pack(bad))


# ------------------------------------------------------------------------ MoM: job resends


def job(jid="20240501123456789001", created=100.0, sent=100.0, entry="1000-0"):
    return OutboxJob(jid=jid, created_at=created, expires_at=created + 900, entry_id=entry, sent_at=sent, sends=1)


def test_stream_id_order():
    assert stream_id_key("1000-2") > stream_id_key("1000-1") > stream_id_key("999-9") > stream_id_key("junk")


def test_job_resent_when_its_entry_is_gone_or_a_dc_read_past_it_without_acking():
    dcs = {"east": DcView("999-0", 0, first_seen=10.0), "west": DcView("1001-0", 0, first_seen=10.0)}
    present = {"1000-0"}

    def acked(jid):
        return {"east"}

    # entry present, east acked, west read past it with an empty spool: west's ack was lost
    assert due_resends([job()], acked, dcs, present.__contains__, now=200.0, interval=15) == [("20240501123456789001", ["west"])]
    # west still has acks spooled: they may be on their way
    busy = {**dcs, "west": DcView("1001-0", 3, first_seen=10.0)}
    assert due_resends([job()], acked, busy, present.__contains__, now=200.0, interval=15) == []
    # ...unless the entry itself is gone
    assert due_resends([job()], acked, busy, set().__contains__, now=200.0, interval=15) == [("20240501123456789001", ["west"])]


def test_job_not_resent_too_early_to_new_dcs_or_to_dcs_not_addressed():
    dcs = {"east": DcView("999-0", 0, first_seen=10.0), "late": DcView("2000-0", 0, first_seen=150.0)}
    gone = set().__contains__
    assert due_resends([job(sent=195.0)], lambda j: set(), dcs, gone, now=200.0, interval=15) == []
    assert due_resends([job()], lambda j: set(), dcs, gone, now=200.0, interval=15) == [("20240501123456789001", ["east"])]
    assert due_resends([job()], lambda j: set(), dcs, gone, now=200.0, interval=15, addressed=lambda j: {"west"}) == []


# ---------------------------------------------------------------------------- ledgers


def test_dc_ledger_keeps_numbered_batches_until_confirmed(tmp_path):
    ledger = DcLedger(str(tmp_path / "dc.sqlite"))
    assert [ledger.next_seq("mom") for _ in range(3)] == [1, 2, 3]
    assert ledger.next_seq("other") == 1
    ledger.record_sent([("mom", 1, b"a"), ("mom", 2, b"b"), ("mom", 3, b"c")])
    assert ledger.confirm_sent("mom", 2) == 2
    assert [s for s, _ in ledger.unconfirmed("mom")] == [3]
    assert ledger.sent_raw("mom", [3, 4]) == [(3, b"c")]
    assert ledger.sent_moms() == ["mom"]
    assert ledger.expire_sent(time.time() + 1) == 1
    joined = ledger.joined_at()
    assert DcLedger(str(tmp_path / "dc.sqlite")).joined_at() == joined  # kept across restarts
    assert DcLedger(str(tmp_path / "dc.sqlite")).next_seq("mom") == 4  # never reused


def test_mom_ledger_outbox(tmp_path):
    ledger = MomLedger(str(tmp_path / "mom.sqlite"))
    now = time.time()
    ledger.add_outbox([("j1", b"e1", now + 900), ("j2", b"e2", now - 1)])
    ledger.add_outbox([("j1", b"other", now + 900)])  # first one wins
    assert [j for j, _, _ in ledger.unsent()] == ["j1", "j2"]
    ledger.mark_sent([("j1", "5-0"), ("j2", "6-0")])
    assert ledger.unsent() == []
    (open_job,) = ledger.open_jobs(now)  # j2 expired
    assert (open_job.jid, open_job.entry_id, open_job.sends) == ("j1", "5-0", 1)
    assert ledger.outbox_entry("j1") == b"e1" and ledger.in_outbox(["j1", "j3"]) == {"j1"}
    assert ledger.note_dc("east", 5.0) == 5.0 and ledger.note_dc("east", 9.0) == 5.0
    ledger.save_uplink_seq("east", 3, 7)
    assert MomLedger(str(tmp_path / "mom.sqlite")).uplink_seqs() == {"east": (3, 7)}


# ------------------------------------------------------------ MoM: replay from the job cache


def test_publish_load_rebuilds_the_minion_bound_load_from_a_saved_load():
    saved = {"fun": "state.apply", "arg": ["x"], "tgt": "web*", "tgt_type": "glob", "ret": "", "user": "root",
             "jid": "ignored", "kwargs": {"metadata": {"a": 1}, "delimiter": ":", "show_jid": False, "start_event": True}}
    assert publish_load("20240501123456789001", saved, (3008, 4)) == {
        "fun": "state.apply", "arg": ["x"], "tgt": "web*", "tgt_type": "glob", "ret": "", "user": "root",
        "jid": "20240501123456789001", "metadata": {"a": 1}, "start_event": True}
    # Salt 3006 does not copy start_event into the minion-bound load
    assert "start_event" not in publish_load("20240501123456789001", saved, (3006, 29))


def test_publisher_recovers_unsent_outbox_entries_and_jobs_it_never_saw(tmp_path):
    import queue
    import threading

    from salt_redis_syndic.config import load_settings
    from salt_redis_syndic.jobs.publisher import JobPublisher
    from salt_redis_syndic.runtime import Counters
    from salt_redis_syndic.wire.jobs import decode_job

    settings = load_settings({"id": "mom", "cachedir": str(tmp_path)}, {"role": "mom", "redis_url": "redis://127.0.0.1:1/0"})
    ledger = MomLedger(str(tmp_path / "mom.sqlite"))
    now = time.time()
    ledger.add_outbox([("20240501123456789001", pack({"b": b"x", "s": b"y", "k": b"z"}), now + 900)])
    base = {"arg": [], "tgt": "*", "tgt_type": "glob", "ret": ""}
    loads = [("20240501123456789001", now - 5, {**base, "fun": "test.ping", "user": "root"}),  # in the outbox
             ("20240501123456789002", now - 4, {**base, "fun": "test.ping", "user": "root"}),
             ("20240501123456789003", now - 3, {**base, "fun": "test.ping", "user": "alice"}),  # eauth: no auth_list
             ("20240501123456789004", now - 2, {"fun": "runner.jobs.list_jobs", "user": "root"})]
    cache = FakeCache(recent=loads)
    bus, counters = FakeBus(), Counters()
    pub = JobPublisher(settings, bus, MOM_KEY, queue.Queue(), counters, threading.Event(), ledger=ledger,
                       recent_loads=cache.recent_loads, master_user="salt")
    got = pub.recover()
    assert [job.jid for job, _ in got] == ["20240501123456789001", "20240501123456789002"]
    assert cache.asked_since and cache.asked_since[0] >= ledger.created_at()
    replayed = decode_job(got[1][1], Verifier([MOM_KEY.public_pem]), 1 << 20, now, 60)
    assert replayed.load["fun"] == "test.ping" and abs(replayed.issued_at - (now - 4)) < 1e-6
    assert ledger.in_outbox(["20240501123456789002"]) == {"20240501123456789002"}
    assert [t for t, _ in bus.events] == ["redis_syndic/job/20240501123456789003/unrecoverable"]
    assert counters.snapshot()["jobs_recovered"] == 1 and counters.snapshot()["jobs_unrecoverable"] == 1


def test_outbox_entry_names_the_dcs_a_job_is_addressed_to():
    from salt_redis_syndic.jobs.publisher import entry_dcs
    from salt_redis_syndic.wire.jobs import encode_job, make_job

    base = {"jid": "20240501123456789001", "fun": "test.ping", "arg": [], "tgt": "*", "tgt_type": "glob"}
    assert entry_dcs(encode_job(make_job(base, "mom", 60, dcs=("east",)), MOM_KEY)) == ("east",)
    assert entry_dcs(encode_job(make_job(base, "mom", 60), MOM_KEY)) is None

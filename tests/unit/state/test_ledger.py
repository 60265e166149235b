"""SQLite ledgers: what a DC claimed and where it read, what the MoM acked and stored."""

from __future__ import annotations

import os
import stat
import time

import pytest

from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.state.ledger import DcLedger, JobRecord, forget_after, keep_jid_until, longest_validity
from salt_redis_syndic.wire.jobs import EventsEnvelope, JobEnvelope

from salt_redis_syndic.state.mom_ledger import MomLedger

pytestmark = pytest.mark.unit

J1, J2, J3 = "20240501123456789001", "20240501123456789002", "20240501123456789003"


@pytest.fixture
def dc_path(tmp_path):
    return str(tmp_path / "state" / "dc.sqlite")


@pytest.fixture
def mom_path(tmp_path):
    return str(tmp_path / "state" / "mom.sqlite")


# ------------------------------------------------------------------------------------ DC side


@pytest.mark.parametrize("make", [DcLedger, MomLedger])
def test_ledger_files_are_readable_by_their_owner_only(tmp_path, make):
    path = str(tmp_path / "state" / "x.sqlite")
    old = os.umask(0o022)
    try:
        ledger = make(path)
        ledger.close()
        files = [p for p in os.listdir(tmp_path / "state") if p.startswith("x.sqlite")]
        assert files and {stat.S_IMODE(os.stat(tmp_path / "state" / p).st_mode) for p in files} == {0o600}
        os.chmod(path, 0o644)  # created by an older version
        make(path).close()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        os.umask(old)


def _job(window: float, dcs=None) -> JobEnvelope:
    return JobEnvelope(jid=J1, load={}, origin="mom", issued_at=1000.0, expires_at=1000.0 + window, dcs=dcs)


def test_a_dc_accepts_validity_windows_it_can_remember_and_refuses_longer_ones():
    assert forget_after(900, 60) == 86400 and forget_after(86400, 60) == 2 * 86460
    longest = longest_validity(900, 60)
    assert longest == 86400 - 120
    assert keep_jid_until(_job(longest), "east", 900, 60) == 1000.0 + longest + 60
    with pytest.raises(RejectedEntry) as err:
        keep_jid_until(_job(longest + 1), "east", 900, 60)
    assert err.value.reason == "validity_too_long" and "job_ttl" in err.value.detail
    assert keep_jid_until(_job(2 * 86400), "east", 2 * 86400, 60) == 1000.0 + 2 * 86400 + 60  # a DC configured for it
    assert keep_jid_until(_job(10 * 86400, dcs=("west",)), "east", 900, 60) == 0.0  # not ours: not claimed
    events = EventsEnvelope(origin="mom", issued_at=1000.0, expires_at=1e9, events=[], key_id="k")
    assert keep_jid_until(events, "east", 900, 60) == 0.0


def test_prune_keeps_a_jid_until_its_signed_expiry(dc_path):
    ledger = DcLedger(dc_path)
    now = time.time()
    ledger.claim(J1, "mom", keep_until=now + 10 * 86400)  # accepted when this DC's job_ttl was longer
    ledger.mark(J1, "published", ["m1"])
    ledger.claim(J2, "mom", keep_until=now)
    ledger.mark(J2, "published", ["m1"])
    assert ledger.prune(now + 5 * 86400, now=now + 5 * 86400) == 1
    assert ledger.claim(J1, "mom") == (False, "published") and ledger.get(J2) is None
    assert ledger.prune(now + 11 * 86400, now=now + 11 * 86400) == 1
    ledger.close()


def test_cursor_default_and_set(dc_path):
    ledger = DcLedger(dc_path)
    assert ledger.cursor() == "0-0"
    assert ledger.cursor(default="") == ""
    ledger.set_cursor("1700000000000-0")
    ledger.set_cursor("1700000000001-3")
    assert ledger.cursor() == "1700000000001-3"


def test_claim_once(dc_path):
    ledger = DcLedger(dc_path)
    assert ledger.claim(J1, "mom1") == (True, "pending")
    assert ledger.claim(J1, "mom1") == (False, "pending")
    assert ledger.claim(J1, "other-mom") == (False, "pending")
    ledger.mark(J1, "published", ["b", "a"])
    assert ledger.claim(J1, "mom1") == (False, "published")


def test_mark_and_get(dc_path):
    ledger = DcLedger(dc_path)
    assert ledger.get(J1) is None
    ledger.claim(J1, "mom1")
    ledger.mark(J1, "published", ["m1", "m2"])
    rec = ledger.get(J1)
    assert isinstance(rec, JobRecord)
    assert (rec.jid, rec.status, rec.minions) == (J1, "published", ["m1", "m2"])
    assert rec.updated_at == pytest.approx(time.time(), abs=5)


def test_pending_lists_unsettled_claims(dc_path):
    ledger = DcLedger(dc_path)
    for jid in (J3, J1, J2):
        ledger.claim(jid, "mom1")
    ledger.mark(J2, "expired")
    assert ledger.pending() == [(J1, "mom1"), (J3, "mom1")]
    assert ledger.counts() == {"pending": 2, "expired": 1}


def test_dc_ledger_survives_reopening(dc_path):
    ledger = DcLedger(dc_path)
    ledger.set_cursor("1700000000005-0")
    ledger.claim(J1, "mom1")
    ledger.mark(J1, "published", ["m1"])
    ledger.claim(J2, "mom1")  # crashed mid-publish
    ledger.close()

    again = DcLedger(dc_path)
    assert again.cursor() == "1700000000005-0"
    assert again.claim(J1, "mom1") == (False, "published")
    assert again.get(J1).minions == ["m1"]
    assert again.pending() == [(J2, "mom1")]
    assert again.claim(J3, "mom1") == (True, "pending")


def test_dc_ledger_two_handles_on_one_file(dc_path):
    # the engine may open the ledger from two threads/processes: one claim wins
    a, b = DcLedger(dc_path), DcLedger(dc_path)
    assert a.claim(J1, "mom1") == (True, "pending")
    assert b.claim(J1, "mom1") == (False, "pending")


def test_dc_prune_keeps_pending_claims(dc_path):
    ledger = DcLedger(dc_path)
    ledger.claim(J1, "mom1")
    ledger.mark(J1, "published", ["m1"])
    ledger.claim(J2, "mom1")
    assert ledger.prune(time.time() - 3600) == 0
    assert ledger.prune(time.time() + 1) == 1
    assert ledger.get(J1) is None
    assert ledger.pending() == [(J2, "mom1")]


# ----------------------------------------------------------------------------------- MoM side


def test_first_ack_wins(mom_path):
    ledger = MomLedger(mom_path)
    assert ledger.record_ack(J1, "east", "published", ["m1", "m2"]) is True
    assert ledger.record_ack(J1, "east", "published", ["m1", "m2", "evil"]) is False
    assert ledger.record_ack(J1, "east", "failed", [], "boom") is False
    assert ledger.acks(J1) == {"east": ("published", ["m1", "m2"])}


def test_acks_per_dc_and_per_jid(mom_path):
    ledger = MomLedger(mom_path)
    ledger.record_ack(J1, "east", "published", ["e1"])
    ledger.record_ack(J1, "west", "expired", [], "too late")
    ledger.record_ack(J2, "east", "published", ["e2"])
    assert ledger.acks(J1) == {"east": ("published", ["e1"]), "west": ("expired", [])}
    assert ledger.acks(J2) == {"east": ("published", ["e2"])}
    assert ledger.acks(J3) == {}


def test_stored_once(mom_path):
    ledger = MomLedger(mom_path)
    assert not ledger.is_stored(J1, "m1")
    ledger.mark_stored(J1, "m1", "east")
    ledger.mark_stored(J1, "m1", "west")  # a repeat does not move it
    assert ledger.is_stored(J1, "m1")
    assert not ledger.is_stored(J1, "m2")
    assert not ledger.is_stored(J2, "m1")
    assert ledger.stored(J1) == {"m1": "east"}


def test_published(mom_path):
    ledger = MomLedger(mom_path)
    assert ledger.published_at(J1) is None
    ledger.record_published(J1, time.time() + 900)
    first = ledger.published_at(J1)
    assert first == pytest.approx(time.time(), abs=5)
    ledger.record_published(J1, time.time() + 9999)
    assert ledger.published_at(J1) == first


def test_mom_ledger_survives_reopening(mom_path):
    ledger = MomLedger(mom_path)
    ledger.record_ack(J1, "east", "published", ["m1"])
    ledger.mark_stored(J1, "m1", "east")
    ledger.close()
    again = MomLedger(mom_path)
    assert again.acks(J1) == {"east": ("published", ["m1"])}
    assert again.is_stored(J1, "m1")
    assert again.record_ack(J1, "east", "published", ["x"]) is False


def test_mom_prune(mom_path):
    ledger = MomLedger(mom_path)
    ledger.record_ack(J1, "east", "published", ["m1"])
    ledger.mark_stored(J1, "m1", "east")
    ledger.record_published(J1, time.time() + 1)
    ledger.prune(time.time() - 3600)  # nothing that old
    assert ledger.is_stored(J1, "m1") and ledger.acks(J1) and ledger.published_at(J1)
    ledger.prune(time.time() + 1)
    assert not ledger.is_stored(J1, "m1")
    assert ledger.acks(J1) == {}
    assert ledger.published_at(J1) is None
    assert ledger.record_ack(J1, "east", "published", ["m1"]) is True


def test_acks_read_after_a_new_ack_sees_it(mom_path):
    """acks() is cached per jid for the collector's hot path: a new ack must invalidate it."""
    ledger = MomLedger(mom_path)
    ledger.record_ack(J1, "east", "published", ["e1"])
    assert ledger.acks(J1) == {"east": ("published", ["e1"])}
    ledger.record_ack(J1, "west", "published", ["w1", "w2"])
    assert ledger.acks(J1) == {"east": ("published", ["e1"]), "west": ("published", ["w1", "w2"])}
    view = ledger.acks(J1)
    view.pop("east")
    assert set(ledger.acks(J1)) == {"east", "west"}
    assert ledger.acks(J2) == {}
    ledger.record_ack(J2, "east", "expired", [])
    assert ledger.acks(J2) == {"east": ("expired", [])}



def test_opening_a_ledger_again_in_one_process_loses_no_write(tmp_path):
    """Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
    included. A second ledger connection of the engine (a fresh read) that opened and closed the
    file by hand dropped the first connection's shared lock; the next short-lived reader (a
    runner) then believed itself the last connection, checkpointed and deleted the WAL, and every
    later write of the first connection went to the deleted file: acks and stored returns lost."""
    import subprocess
    import sys

    from salt_redis_syndic.state.ledger import connect

    path = str(tmp_path / "mom.sqlite")
    first = connect(path)
    first.execute("CREATE TABLE t (x INTEGER)")
    first.execute("INSERT INTO t VALUES (1)")
    second = connect(path)  # the same process opens the ledger again
    reader = ("import sqlite3, sys\n"
              "c = sqlite3.connect(sys.argv[1])\n"
              "print(c.execute('SELECT COUNT(*) FROM t').fetchone()[0])\n"
              "c.close()\n")
    try:
        run = [sys.executable, "-c", reader, path]
        assert subprocess.run(run, capture_output=True, text=True, timeout=30).stdout.strip() == "1"
        first.execute("INSERT INTO t VALUES (2)")  # written after another process closed the file
        assert subprocess.run(run, capture_output=True, text=True, timeout=30).stdout.strip() == "2"
    finally:
        second.close()
        first.close()

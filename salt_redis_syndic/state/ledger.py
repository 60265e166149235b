"""Small durable ledgers (SQLite in the master cachedir) that make every sink idempotent.

* DC side: the stream cursor and every jid ever claimed, so a job is never published twice on
  a DC, even after an engine restart or a replayed stream entry.
* MoM side: the acks received per (jid, DC) and every (jid, minion) stored, so a return that
  arrives twice (retries, spool + network copy after a blackhole) is stored once.

Both sides also keep what the other may still lack, so that delivery does not hinge on Redis
keeping every acknowledged write: the MoM an outbox of signed job entries (re-sent while a DC
has not acknowledged them), a DC the uplink batches the MoM has not confirmed (re-sent when the
MoM's confirmation shows a gap).  The MoM side is :mod:`salt_redis_syndic.state.mom_ledger`; re-sends: :mod:`salt_redis_syndic.jobs.reconcile`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass

from ..errors import RejectedEntry
from ..wire.jobs import EventsEnvelope, JobEnvelope
from ..wire.subjobs import WHOLE_JID
from .ledger_migrate import DC_TABLES, add_columns, add_sub_keys

DAY = 86400.0


def forget_after(job_ttl: float, skew: float) -> float:
    """How long a DC remembers a settled jid (its ``updated_at``): a day at least, twice its own
    ``job_ttl + clock_skew`` beyond that (see :meth:`DcLedger.prune`)."""
    return max(DAY, 2 * (job_ttl + skew))


def longest_validity(job_ttl: float, skew: float) -> float:
    """The longest signed validity (``expires_at - issued_at``) a DC accepts: a job it claims
    (no earlier than ``issued_at - skew``) must be expired, ``expires_at + skew`` past, by the
    time :func:`forget_after` lets it forget the jid, or a replay would run it again."""
    return forget_after(job_ttl, skew) - 2 * skew


def keep_jid_until(job: JobEnvelope | EventsEnvelope, dc: str, job_ttl: float, skew: float) -> float:
    """Until when this DC must remember the jid of ``job`` (its signed expiry plus skew; 0 for
    what it does not claim: events, a job for other DCs).  Raises ``RejectedEntry``
    (``validity_too_long``) when the MoM signed a validity longer than this DC can remember:
    a MoM whose ``job_ttl`` exceeds the DCs' (about a day with the defaults)."""
    if isinstance(job, EventsEnvelope) or not job.addressed_to(dc):
        return 0.0
    window, longest = job.expires_at - job.issued_at, longest_validity(job_ttl, skew)
    if window > longest:
        raise RejectedEntry("validity_too_long", f"job {job.jid} is valid for {window:.0f}s; DC {dc} remembers jids "
                            f"for {longest:.0f}s at most: set its job_ttl to at least the MoM's")
    return job.expires_at + skew


def ledger_file(state_dir: str, role: str) -> str:
    """Where a role's ledger lives (``dc.sqlite`` / ``mom.sqlite`` in the state dir)."""
    return os.path.join(state_dir, f"{role}.sqlite")


def connect(path: str) -> sqlite3.Connection:
    """Open a ledger, its file readable by this user only (SQLite gives its -wal and -shm files
    the same mode); a file an older version left group- or world-readable is tightened."""
    if path != ":memory:":
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        # Never open and close an existing ledger by hand: closing any descriptor of a file drops
        # every POSIX lock this process holds on it, SQLite's included (another connection of
        # this process would then write unlocked). Only a file that does not exist yet is made.
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            if os.stat(path).st_mode & 0o077:
                os.chmod(path, 0o600)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@dataclass(frozen=True)
class JobRecord:
    jid: str
    status: str
    minions: list[str]
    updated_at: float
    sub: str = WHOLE_JID  # the sub-job (see subjobs); '' for a row that covers the whole jid


class DcLedger:
    """Cursor and claimed jids of one DC engine."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._db = connect(path)
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS jobs (
                jid TEXT NOT NULL, sub TEXT NOT NULL DEFAULT '', origin TEXT NOT NULL, status TEXT NOT NULL,
                minions TEXT NOT NULL DEFAULT '[]', updated_at REAL NOT NULL, keep_until REAL NOT NULL DEFAULT 0,
                PRIMARY KEY (jid, sub));
            CREATE INDEX IF NOT EXISTS jobs_updated ON jobs(updated_at);
            CREATE TABLE IF NOT EXISTS sent (
                mom TEXT NOT NULL, seq INTEGER NOT NULL, raw BLOB NOT NULL, sent_at REAL NOT NULL,
                PRIMARY KEY (mom, seq));
            """
        )
        with self._lock:
            add_sub_keys(self._db, DC_TABLES)  # a ledger from before sub-jobs: its rows cover whole jids
            add_columns(self._db, "jobs", {"keep_until": "REAL NOT NULL DEFAULT 0"})
            self._db.execute("INSERT OR IGNORE INTO kv(k, v) VALUES('joined_at', ?)", (repr(time.time()),))

    def joined_at(self) -> float:
        """When this DC engine first ran: jobs issued before it are not its to run."""
        row = self._db.execute("SELECT v FROM kv WHERE k='joined_at'").fetchone()
        return float(row[0])

    # -- uplink batches the MoM has not confirmed yet --------------------------------------
    def next_seq(self, mom: str) -> int:
        """Reserve the next uplink batch number for ``mom`` (1, 2, ... per MoM, never reused)."""
        with self._lock:
            key = f"seq:{mom}"
            row = self._db.execute("SELECT v FROM kv WHERE k=?", (key,)).fetchone()
            seq = int(row[0]) + 1 if row else 1
            self._db.execute("INSERT INTO kv(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (key, str(seq)))
            return seq

    def record_sent(self, batches: list[tuple[str, int, bytes]]) -> None:
        """Keep pushed batches ``(mom, seq, raw)`` until the MoM confirms them."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO sent(mom, seq, raw, sent_at) VALUES (?, ?, ?, ?)",
                                 [(mom, seq, raw, now) for mom, seq, raw in batches])
            self._db.execute("COMMIT")

    def unconfirmed(self, mom: str) -> list[tuple[int, float]]:
        """``(seq, sent_at)`` of batches to ``mom`` not yet confirmed, oldest first."""
        return list(self._db.execute("SELECT seq, sent_at FROM sent WHERE mom=? ORDER BY seq", (mom,)))

    def sent_moms(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT DISTINCT mom FROM sent")]

    def sent_raw(self, mom: str, seqs: list[int]) -> list[tuple[int, bytes]]:
        rows = []
        for seq in seqs:
            row = self._db.execute("SELECT raw FROM sent WHERE mom=? AND seq=?", (mom, seq)).fetchone()
            if row:
                rows.append((seq, bytes(row[0])))
        return rows

    def touch_sent(self, mom: str, seqs: list[int]) -> None:
        """Re-sent now: wait a full interval before sending them again."""
        now = time.time()
        with self._lock:
            self._db.executemany("UPDATE sent SET sent_at=? WHERE mom=? AND seq=?", [(now, mom, s) for s in seqs])

    def confirm_sent(self, mom: str, done_upto: int) -> int:
        """Forget batches up to ``done_upto`` (the MoM stored them); returns how many."""
        with self._lock:
            return self._db.execute("DELETE FROM sent WHERE mom=? AND seq<=?", (mom, done_upto)).rowcount

    def expire_sent(self, older_than: float) -> int:
        """Drop unconfirmed batches sent before ``older_than`` (bounded disk); returns how many."""
        with self._lock:
            return self._db.execute("DELETE FROM sent WHERE sent_at < ?", (older_than,)).rowcount

    def cursor(self, default: str = "0-0") -> str:
        row = self._db.execute("SELECT v FROM kv WHERE k='cursor'").fetchone()
        return row[0] if row else default

    def set_cursor(self, stream_id: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO kv(k, v) VALUES('cursor', ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v", (stream_id,))

    def claim(self, jid: str, origin: str, sub: str = WHOLE_JID, keep_until: float = 0.0) -> tuple[bool, str]:
        """Record that sub-job ``sub`` of ``jid`` is about to be published (remembered at least
        until ``keep_until``, see :func:`keep_jid_until`).

        Returns ``(True, "pending")`` for a new one, else ``(False, <its recorded status>)``.
        A whole-jid row (written before sub-jobs, or ``sub=''``) claims every sub-job of its jid.
        """
        with self._lock:
            if sub != WHOLE_JID:
                row = self._db.execute("SELECT status FROM jobs WHERE jid=? AND sub=?", (jid, WHOLE_JID)).fetchone()
                if row:
                    return False, row[0]
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs(jid, sub, origin, status, updated_at, keep_until) "
                "VALUES (?, ?, ?, 'pending', ?, ?)", (jid, sub, origin, time.time(), keep_until),
            )
            if cur.rowcount == 1:
                return True, "pending"
            row = self._db.execute("SELECT status FROM jobs WHERE jid=? AND sub=?", (jid, sub)).fetchone()
            return False, row[0] if row else "unknown"

    def mark(self, jid: str, status: str, minions: list[str] | None = None, sub: str = WHOLE_JID) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status=?, minions=?, updated_at=? WHERE jid=? AND sub=?",
                (status, json.dumps(minions or []), time.time(), jid, sub),
            )

    def origin_of(self, jid: str) -> str | None:
        """The MoM a bridged jid came from (None: not a bridged job)."""
        row = self._db.execute("SELECT origin FROM jobs WHERE jid=? LIMIT 1", (jid,)).fetchone()
        return row[0] if row else None

    def get(self, jid: str, sub: str | None = None) -> JobRecord | None:
        """The record of sub-job ``sub`` of ``jid`` (or the whole-jid row that covers it); None: its latest."""
        if sub is None:
            row = self._db.execute("SELECT jid, status, minions, updated_at, sub FROM jobs WHERE jid=? "
                                   "ORDER BY updated_at DESC, rowid DESC LIMIT 1", (jid,)).fetchone()
        else:
            row = self._db.execute("SELECT jid, status, minions, updated_at, sub FROM jobs WHERE jid=? AND sub IN (?, ?) "
                                   "ORDER BY sub DESC LIMIT 1", (jid, sub, WHOLE_JID)).fetchone()
        return JobRecord(row[0], row[1], json.loads(row[2]), row[3], row[4]) if row else None

    def subs_of(self, jid: str) -> list[str]:
        """The sub-jobs of ``jid`` this DC claimed (a batch has one per sub-batch)."""
        return [row[0] for row in self._db.execute("SELECT sub FROM jobs WHERE jid=? ORDER BY sub", (jid,))]

    def pending(self) -> list[tuple[str, str]]:
        """(jid, origin) of jobs claimed but not known to be settled: a crash happened mid-publish."""
        return list(self._db.execute("SELECT DISTINCT jid, origin FROM jobs WHERE status='pending' ORDER BY jid"))

    def counts(self) -> dict[str, int]:
        return {status: n for status, n in self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")}

    def prune(self, older_than: float, now: float | None = None) -> int:
        """Forget settled jids last updated before ``older_than`` and no longer valid at ``now``."""
        now = time.time() if now is None else now
        with self._lock:
            return self._db.execute("DELETE FROM jobs WHERE updated_at < ? AND keep_until < ? AND status != 'pending'",
                                    (older_than, now)).rowcount

    def close(self) -> None:
        self._db.close()

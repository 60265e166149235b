"""Small durable ledgers (SQLite in the master cachedir) that make every sink idempotent.

* DC side: the stream cursor and every jid ever claimed, so a job is never published twice on
  a DC, even after an engine restart or a replayed stream entry.
* MoM side: the acks received per (jid, DC) and every (jid, minion) stored, so a return that
  arrives twice (retries, spool + network copy after a blackhole) is stored once.

Both sides also keep what the other may still lack, so that delivery does not hinge on Redis
keeping every acknowledged write: the MoM an outbox of signed job entries (re-sent while a DC
has not acknowledged them), a DC the uplink batches the MoM has not confirmed (re-sent when the
MoM's confirmation shows a gap).  See :mod:`salt_redis_syndic.reconcile`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass

ACKS_CACHE_JIDS = 256  # jids whose acks MomLedger keeps parsed in memory


def ledger_file(state_dir: str, role: str) -> str:
    """Where a role's ledger lives (``dc.sqlite`` / ``mom.sqlite`` in the state dir)."""
    return os.path.join(state_dir, f"{role}.sqlite")


def _connect(path: str) -> sqlite3.Connection:
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
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


@dataclass(frozen=True)
class OutboxJob:
    jid: str
    created_at: float
    expires_at: float
    entry_id: str
    sent_at: float
    sends: int


class DcLedger:
    """Cursor and claimed jids of one DC engine."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._db = _connect(path)
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS jobs (
                jid TEXT PRIMARY KEY, origin TEXT NOT NULL, status TEXT NOT NULL,
                minions TEXT NOT NULL DEFAULT '[]', updated_at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS jobs_updated ON jobs(updated_at);
            CREATE TABLE IF NOT EXISTS sent (
                mom TEXT NOT NULL, seq INTEGER NOT NULL, raw BLOB NOT NULL, sent_at REAL NOT NULL,
                PRIMARY KEY (mom, seq));
            """
        )
        with self._lock:
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

    def claim(self, jid: str, origin: str) -> tuple[bool, str]:
        """Record that ``jid`` is about to be published.

        Returns ``(True, "pending")`` for a new jid, else ``(False, <its recorded status>)``.
        """
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs(jid, origin, status, updated_at) VALUES (?, ?, 'pending', ?)",
                (jid, origin, time.time()),
            )
            if cur.rowcount == 1:
                return True, "pending"
            row = self._db.execute("SELECT status FROM jobs WHERE jid=?", (jid,)).fetchone()
            return False, row[0] if row else "unknown"

    def mark(self, jid: str, status: str, minions: list[str] | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status=?, minions=?, updated_at=? WHERE jid=?",
                (status, json.dumps(minions or []), time.time(), jid),
            )

    def origin_of(self, jid: str) -> str | None:
        """The MoM a bridged jid came from (None: not a bridged job)."""
        row = self._db.execute("SELECT origin FROM jobs WHERE jid=?", (jid,)).fetchone()
        return row[0] if row else None

    def get(self, jid: str) -> JobRecord | None:
        row = self._db.execute("SELECT jid, status, minions, updated_at FROM jobs WHERE jid=?", (jid,)).fetchone()
        return JobRecord(row[0], row[1], json.loads(row[2]), row[3]) if row else None

    def pending(self) -> list[tuple[str, str]]:
        """(jid, origin) of jobs claimed but not known to be settled: a crash happened mid-publish."""
        return list(self._db.execute("SELECT jid, origin FROM jobs WHERE status='pending' ORDER BY jid"))

    def counts(self) -> dict[str, int]:
        return {status: n for status, n in self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")}

    def prune(self, older_than: float) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM jobs WHERE updated_at < ? AND status != 'pending'", (older_than,)).rowcount

    def close(self) -> None:
        self._db.close()


class MomLedger:
    """Acks and stored returns on the MoM."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._db = _connect(path)
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS acks (
                jid TEXT NOT NULL, dc TEXT NOT NULL, status TEXT NOT NULL, minions TEXT NOT NULL,
                reason TEXT NOT NULL DEFAULT '', at REAL NOT NULL, PRIMARY KEY (jid, dc));
            CREATE TABLE IF NOT EXISTS stored (
                jid TEXT NOT NULL, minion TEXT NOT NULL, dc TEXT NOT NULL, at REAL NOT NULL,
                PRIMARY KEY (jid, minion));
            CREATE TABLE IF NOT EXISTS published (jid TEXT PRIMARY KEY, at REAL NOT NULL, expires_at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS acks_at ON acks(at);
            CREATE INDEX IF NOT EXISTS stored_at ON stored(at);
            CREATE TABLE IF NOT EXISTS outbox (
                jid TEXT PRIMARY KEY, entry BLOB NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL,
                entry_id TEXT NOT NULL DEFAULT '', sent_at REAL NOT NULL DEFAULT 0, sends INTEGER NOT NULL DEFAULT 0);
            CREATE INDEX IF NOT EXISTS outbox_expires ON outbox(expires_at);
            CREATE TABLE IF NOT EXISTS dcs (dc TEXT PRIMARY KEY, first_seen REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS uplink_seq (dc TEXT PRIMARY KEY, done_upto INTEGER NOT NULL, max_seen INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
            """
        )
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta(k, v) VALUES('created_at', ?)", (repr(time.time()),))
        # acks(jid) is read for every stored return: parsing every DC's minion list from JSON
        # each time grew with the DC size (10 DCs x 1,000 minions: 10,000 names per return).
        self._acks_cache: dict[str, dict[str, tuple[str, list[str]]]] = {}

    def created_at(self) -> float:
        """When this MoM ledger was created: jobs older than that predate the bridge."""
        return float(self._db.execute("SELECT v FROM meta WHERE k='created_at'").fetchone()[0])

    # -- outbox: signed job entries kept until they expire ---------------------------------
    def add_outbox(self, items: list[tuple[str, bytes, float]]) -> None:
        """Record ``(jid, packed entry, expires_at)`` before the entries go to Redis (first one wins)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO outbox(jid, entry, created_at, expires_at) VALUES (?, ?, ?, ?)",
                                 [(jid, entry, now, exp) for jid, entry, exp in items])
            self._db.execute("COMMIT")

    def mark_sent(self, sent: list[tuple[str, str]]) -> None:
        """``(jid, stream entry id)`` pairs that Redis accepted."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE outbox SET entry_id=?, sent_at=?, sends=sends+1 WHERE jid=?",
                                 [(entry_id, now, jid) for jid, entry_id in sent])
            self._db.execute("COMMIT")

    def unsent(self) -> list[tuple[str, bytes, float]]:
        """Outbox entries never accepted by Redis (the engine died before or during the append)."""
        return [(jid, bytes(e), exp) for jid, e, exp in
                self._db.execute("SELECT jid, entry, expires_at FROM outbox WHERE sends=0 ORDER BY created_at")]

    def open_jobs(self, now: float) -> list[OutboxJob]:
        """Sent, unexpired outbox jobs, oldest first: what reconciliation looks at."""
        rows = self._db.execute("SELECT jid, created_at, expires_at, entry_id, sent_at, sends FROM outbox "
                                "WHERE expires_at > ? AND sends > 0 ORDER BY created_at", (now,))
        return [OutboxJob(*row) for row in rows]

    def outbox_entry(self, jid: str) -> bytes | None:
        row = self._db.execute("SELECT entry FROM outbox WHERE jid=?", (jid,)).fetchone()
        return bytes(row[0]) if row else None

    def in_outbox(self, jids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(jids), 500):
            chunk = jids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self._db.execute(f"SELECT jid FROM outbox WHERE jid IN ({marks})", chunk))
        return found

    # -- DCs and their uplink batch numbers ------------------------------------------------
    def note_dc(self, dc: str, now: float) -> float:
        """First time this MoM heard of ``dc`` (recorded on first call)."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO dcs(dc, first_seen) VALUES (?, ?)", (dc, now))
        return float(self._db.execute("SELECT first_seen FROM dcs WHERE dc=?", (dc,)).fetchone()[0])

    def uplink_seqs(self) -> dict[str, tuple[int, int]]:
        return {dc: (d, m) for dc, d, m in self._db.execute("SELECT dc, done_upto, max_seen FROM uplink_seq")}

    def save_uplink_seq(self, dc: str, done_upto: int, max_seen: int) -> None:
        with self._lock:
            self._db.execute("INSERT INTO uplink_seq(dc, done_upto, max_seen) VALUES (?, ?, ?) ON CONFLICT(dc) DO UPDATE "
                             "SET done_upto=excluded.done_upto, max_seen=excluded.max_seen", (dc, done_upto, max_seen))

    def record_published(self, jid: str, expires_at: float) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO published(jid, at, expires_at) VALUES (?, ?, ?)", (jid, time.time(), expires_at))

    def published_at(self, jid: str) -> float | None:
        row = self._db.execute("SELECT at FROM published WHERE jid=?", (jid,)).fetchone()
        return row[0] if row else None

    def record_ack(self, jid: str, dc: str, status: str, minions: list[str], reason: str = "") -> bool:
        """Store an ack; False if this (jid, dc) was acknowledged before (the first one wins)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO acks(jid, dc, status, minions, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                (jid, dc, status, json.dumps(minions), reason, time.time()),
            )
            self._acks_cache.pop(jid, None)
            return cur.rowcount == 1

    def extend_ack(self, jid: str, dc: str, minions: list[str]) -> list[str]:
        """Merge a middle master's ack extension into its (jid, dc) ack; returns the minions it added."""
        with self._lock:
            row = self._db.execute("SELECT status, minions FROM acks WHERE jid=? AND dc=?", (jid, dc)).fetchone()
            known = json.loads(row[1]) if row else []
            if row is not None and row[0] != "published":
                return []  # a job the DC did not run is not extended
            added = sorted(set(minions) - set(known))
            merged = sorted(set(known) | set(minions))
            self._db.execute(
                "INSERT INTO acks(jid, dc, status, minions, reason, at) VALUES (?, ?, 'published', ?, '', ?) "
                "ON CONFLICT(jid, dc) DO UPDATE SET minions=excluded.minions",
                (jid, dc, json.dumps(merged), time.time()),
            )
            self._acks_cache.pop(jid, None)
            return added

    def acks(self, jid: str) -> dict[str, tuple[str, list[str]]]:
        """{dc: (status, minions)} for ``jid``; the minion lists are shared: do not mutate them."""
        cached = self._acks_cache.get(jid)
        if cached is None:
            cached = {dc: (status, json.loads(m))
                      for dc, status, m in self._db.execute("SELECT dc, status, minions FROM acks WHERE jid=?", (jid,))}
            if len(self._acks_cache) >= ACKS_CACHE_JIDS:
                self._acks_cache.pop(next(iter(self._acks_cache)))  # oldest first
            self._acks_cache[jid] = cached
        return dict(cached)

    def is_stored(self, jid: str, minion: str) -> bool:
        return self._db.execute("SELECT 1 FROM stored WHERE jid=? AND minion=?", (jid, minion)).fetchone() is not None

    def mark_stored(self, jid: str, minion: str, dc: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO stored(jid, minion, dc, at) VALUES (?, ?, ?, ?)", (jid, minion, dc, time.time()))

    def stored(self, jid: str) -> dict[str, str]:
        return {m: dc for m, dc in self._db.execute("SELECT minion, dc FROM stored WHERE jid=?", (jid,))}

    def prune(self, older_than: float) -> None:
        with self._lock:
            self._acks_cache.clear()
            for table, col in (("acks", "at"), ("stored", "at"), ("published", "at"), ("outbox", "expires_at")):
                self._db.execute(f"DELETE FROM {table} WHERE {col} < ?", (older_than,))

    def close(self) -> None:
        self._db.close()

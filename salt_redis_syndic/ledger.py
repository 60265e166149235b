"""Small durable ledgers (SQLite in the master cachedir) that make every sink idempotent.

* DC side: the stream cursor and every jid ever claimed, so a job is never published twice on
  a DC, even after an engine restart or a replayed stream entry.
* MoM side: the acks received per (jid, DC) and every (jid, minion) stored, so a return that
  arrives twice (retries, spool + network copy after a blackhole) is stored once.
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
            """
        )

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
            """
        )
        self._db.execute("PRAGMA synchronous=NORMAL")
        # acks(jid) is read for every stored return: parsing every DC's minion list from JSON
        # each time grew with the DC size (10 DCs x 1,000 minions: 10,000 names per return).
        self._acks_cache: dict[str, dict[str, tuple[str, list[str]]]] = {}

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
            for table, col in (("acks", "at"), ("stored", "at"), ("published", "at")):
                self._db.execute(f"DELETE FROM {table} WHERE {col} < ?", (older_than,))

    def close(self) -> None:
        self._db.close()

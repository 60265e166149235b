"""The MoM's ledger (SQLite): the outbox of jobs before and after they reach the stream, each DC's
acks per job (one row per sub-job, merged per DC), and which (jid, minion) returns were stored.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from ..wire.subjobs import EXTENSION, WHOLE_JID, covers, merge_acks
from .ledger import connect
from .ledger_migrate import MOM_TABLES, add_sub_keys

ACKS_CACHE_JIDS = 256  # jids whose acks MomLedger keeps parsed in memory


@dataclass(frozen=True)
class OutboxJob:
    jid: str
    created_at: float
    expires_at: float
    entry_id: str
    sent_at: float
    sends: int
    sub: str = WHOLE_JID  # the sub-job this entry carries (a batch sends several under one jid)


class MomLedger:
    """Acks and stored returns on the MoM."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._db = connect(path)
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS acks (
                jid TEXT NOT NULL, dc TEXT NOT NULL, sub TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, minions TEXT NOT NULL,
                reason TEXT NOT NULL DEFAULT '', at REAL NOT NULL, PRIMARY KEY (jid, dc, sub));
            CREATE TABLE IF NOT EXISTS stored (
                jid TEXT NOT NULL, minion TEXT NOT NULL, dc TEXT NOT NULL, at REAL NOT NULL,
                PRIMARY KEY (jid, minion));
            CREATE TABLE IF NOT EXISTS published (jid TEXT PRIMARY KEY, at REAL NOT NULL, expires_at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS acks_at ON acks(at);
            CREATE INDEX IF NOT EXISTS stored_at ON stored(at);
            CREATE TABLE IF NOT EXISTS outbox (
                jid TEXT NOT NULL, sub TEXT NOT NULL DEFAULT '', entry BLOB NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL,
                entry_id TEXT NOT NULL DEFAULT '', sent_at REAL NOT NULL DEFAULT 0, sends INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (jid, sub));
            CREATE INDEX IF NOT EXISTS outbox_expires ON outbox(expires_at);
            CREATE TABLE IF NOT EXISTS dcs (dc TEXT PRIMARY KEY, first_seen REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS uplink_seq (dc TEXT PRIMARY KEY, done_upto INTEGER NOT NULL, max_seen INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
            """
        )
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            add_sub_keys(self._db, MOM_TABLES)  # a ledger from before sub-jobs: its rows cover whole jids
            self._db.execute("INSERT OR IGNORE INTO meta(k, v) VALUES('created_at', ?)", (repr(time.time()),))
        # acks(jid) is read for every stored return: parsing every DC's minion list from JSON
        # each time grew with the DC size (10 DCs x 1,000 minions: 10,000 names per return).
        self._acks_cache: dict[str, dict[str, dict[str, tuple[str, list[str]]]]] = {}
        self._merged_cache: dict[str, dict[str, tuple[str, list[str]]]] = {}  # acks(jid), same lifetime

    def created_at(self) -> float:
        """When this MoM ledger was created: jobs older than that predate the bridge."""
        return float(self._db.execute("SELECT v FROM meta WHERE k='created_at'").fetchone()[0])

    # -- outbox: signed job entries kept until they expire ---------------------------------
    def add_outbox(self, items: list[tuple[str, bytes, float] | tuple[str, bytes, float, str]]) -> None:
        """Record ``(jid, packed entry, expires_at[, sub])`` before the entries go to Redis (first one wins).

        Keyed by (jid, sub-job): every sub-batch of a batch job has its own entry.
        """
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO outbox(jid, sub, entry, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                                 [(item[0], item[3] if len(item) > 3 else WHOLE_JID, item[1], now, item[2])
                                  for item in items])
            self._db.execute("COMMIT")

    def mark_sent(self, sent: list[tuple[str, str] | tuple[str, str, str]]) -> None:
        """``(jid, stream entry id[, sub])`` that Redis accepted."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("UPDATE outbox SET entry_id=?, sent_at=?, sends=sends+1 WHERE jid=? AND sub=?",
                                 [(item[1], now, item[0], item[2] if len(item) > 2 else WHOLE_JID) for item in sent])
            self._db.execute("COMMIT")

    def unsent(self) -> list[tuple[str, bytes, float]]:
        """Outbox entries never accepted by Redis (the engine died before or during the append)."""
        return [(jid, entry, exp) for jid, entry, exp, _ in self.unsent_subs()]

    def unsent_subs(self) -> list[tuple[str, bytes, float, str]]:
        """:meth:`unsent` with each entry's sub-job."""
        return [(jid, bytes(e), exp, sub) for jid, e, exp, sub in
                self._db.execute("SELECT jid, entry, expires_at, sub FROM outbox WHERE sends=0 ORDER BY created_at")]

    def open_jobs(self, now: float) -> list[OutboxJob]:
        """Sent, unexpired outbox jobs (one per sub-job), oldest first: what reconciliation looks at."""
        rows = self._db.execute("SELECT jid, created_at, expires_at, entry_id, sent_at, sends, sub FROM outbox "
                                "WHERE expires_at > ? AND sends > 0 ORDER BY created_at", (now,))
        return [OutboxJob(*row) for row in rows]

    def outbox_entry(self, jid: str, sub: str | None = None) -> bytes | None:
        """The signed entry of sub-job ``sub`` of ``jid`` (None: its first sub-job)."""
        if sub is None:
            row = self._db.execute("SELECT entry FROM outbox WHERE jid=? ORDER BY created_at LIMIT 1", (jid,)).fetchone()
        else:
            row = self._db.execute("SELECT entry FROM outbox WHERE jid=? AND sub=?", (jid, sub)).fetchone()
        return bytes(row[0]) if row else None

    def in_outbox(self, jids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(jids), 500):
            chunk = jids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in self._db.execute(f"SELECT DISTINCT jid FROM outbox WHERE jid IN ({marks})", chunk))
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

    def record_ack(self, jid: str, dc: str, status: str, minions: list[str], reason: str = "",
                   sub: str = WHOLE_JID) -> bool:
        """Store an ack; False if this (jid, dc, sub-job) was acknowledged before (the first one wins).

        A batch job has one ack per sub-job from each DC; :meth:`acks` merges them.
        """
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO acks(jid, dc, sub, status, minions, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (jid, dc, sub, status, json.dumps(minions), reason, time.time()),
            )
            self._acks_cache.pop(jid, None)
            self._merged_cache.pop(jid, None)
            return cur.rowcount == 1

    def extend_ack(self, jid: str, dc: str, minions: list[str]) -> list[str]:
        """Merge a middle master's ack extension into its (jid, dc) ack; returns the minions it added."""
        with self._lock:
            rows = self._db.execute("SELECT sub, status, minions FROM acks WHERE jid=? AND dc=? ORDER BY at",
                                    (jid, dc)).fetchall()
            status, known = merge_acks((st, json.loads(m)) for _, st, m in rows)
            if rows and status != "published":
                return []  # a job the DC did not run is not extended
            added = sorted(set(minions) - set(known))
            ext = next((json.loads(m) for sub, _, m in rows if sub == EXTENSION), [])
            self._db.execute(
                "INSERT INTO acks(jid, dc, sub, status, minions, reason, at) VALUES (?, ?, ?, 'published', ?, '', ?) "
                "ON CONFLICT(jid, dc, sub) DO UPDATE SET minions=excluded.minions",
                (jid, dc, EXTENSION, json.dumps(sorted(set(ext) | set(minions))), time.time()),
            )
            self._acks_cache.pop(jid, None)
            self._merged_cache.pop(jid, None)
            return added

    def ack_rows(self, jid: str) -> dict[str, dict[str, tuple[str, list[str]]]]:
        """{dc: {sub-job: (status, minions)}} for ``jid``, oldest ack first; shared: do not mutate."""
        cached = self._acks_cache.get(jid)
        if cached is None:
            cached = self._read_ack_rows(jid)
            if len(self._acks_cache) >= ACKS_CACHE_JIDS:
                oldest = next(iter(self._acks_cache))
                self._acks_cache.pop(oldest)
                self._merged_cache.pop(oldest, None)
            self._acks_cache[jid] = cached
        return cached

    def acks(self, jid: str) -> dict[str, tuple[str, list[str]]]:
        """{dc: (status, minions)} for ``jid``, each DC's sub-job acks merged (:func:`subjobs.merge_acks`)."""
        merged = self._merged_cache.get(jid)
        if merged is None or jid not in self._acks_cache:
            merged = {dc: merge_acks(subs.values()) for dc, subs in self.ack_rows(jid).items()}
            self._merged_cache[jid] = merged
        return dict(merged)

    def _read_ack_rows(self, jid: str) -> dict[str, dict[str, tuple[str, list[str]]]]:
        rows: dict[str, dict[str, tuple[str, list[str]]]] = {}
        for dc, sub, status, m in self._db.execute("SELECT dc, sub, status, minions FROM acks WHERE jid=? "
                                                   "ORDER BY at, rowid", (jid,)):
            rows.setdefault(dc, {})[sub] = (status, json.loads(m))
        return rows

    def settled_acks(self, jid: str) -> dict[str, tuple[str, list[str]]]:
        """Like :meth:`acks`, read from the database, for the DCs that acknowledged every sub-job sent.

        A batch sends sub-jobs one after the other: until a DC acknowledged the latest, its list
        is not final. Read from the database: for a reader whose cache another instance fills.
        """
        sent = [row[0] for row in self._db.execute("SELECT sub FROM outbox WHERE jid=?", (jid,))]
        out = {}
        for dc, subs in self._read_ack_rows(jid).items():
            acked = set(subs) - {EXTENSION}
            if all(covers(acked, sub) for sub in sent):
                out[dc] = merge_acks(subs.values())
        return out

    def acked_dcs(self, jid: str, sub: str) -> set[str]:
        """The DCs that acknowledged sub-job ``sub`` of ``jid`` (a whole-jid ack counts for every sub-job)."""
        return {dc for dc, subs in self.ack_rows(jid).items() if covers(set(subs) - {EXTENSION}, sub)}

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
            self._merged_cache.clear()
            for table, col in (("acks", "at"), ("stored", "at"), ("published", "at"), ("outbox", "expires_at")):
                self._db.execute(f"DELETE FROM {table} WHERE {col} < ?", (older_than,))

    def close(self) -> None:
        self._db.close()

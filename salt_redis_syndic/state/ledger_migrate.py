"""In-place schema upgrades of the SQLite ledgers (an existing dc.sqlite / mom.sqlite keeps working).

Sub-jobs (:mod:`salt_redis_syndic.subjobs`) add a ``sub`` column to the primary key of the DC's
``jobs``, and of the MoM's ``acks`` and ``outbox``.  SQLite cannot change a primary key, so
each table is rebuilt once, in one transaction: rows written before keep their values with
``sub = ''`` (a whole-jid row: it covers every sub-job of its jid, so nothing claimed before
the upgrade runs again).  Several processes open the same ledger (the engine, the returner,
``salt-run``): the check is repeated under ``BEGIN IMMEDIATE``, so only one of them rebuilds.
"""

from __future__ import annotations

import sqlite3

# table -> (new definition, columns copied from the old table, indexes to recreate)
_DC_JOBS = (
    "CREATE TABLE jobs__new (jid TEXT NOT NULL, sub TEXT NOT NULL DEFAULT '', origin TEXT NOT NULL, "
    "status TEXT NOT NULL, minions TEXT NOT NULL DEFAULT '[]', updated_at REAL NOT NULL, PRIMARY KEY (jid, sub))",
    "jid, origin, status, minions, updated_at",
    ("CREATE INDEX IF NOT EXISTS jobs_updated ON jobs(updated_at)",),
)
_MOM_ACKS = (
    "CREATE TABLE acks__new (jid TEXT NOT NULL, dc TEXT NOT NULL, sub TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, "
    "minions TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', at REAL NOT NULL, PRIMARY KEY (jid, dc, sub))",
    "jid, dc, status, minions, reason, at",
    ("CREATE INDEX IF NOT EXISTS acks_at ON acks(at)",),
)
_MOM_OUTBOX = (
    "CREATE TABLE outbox__new (jid TEXT NOT NULL, sub TEXT NOT NULL DEFAULT '', entry BLOB NOT NULL, "
    "created_at REAL NOT NULL, expires_at REAL NOT NULL, entry_id TEXT NOT NULL DEFAULT '', "
    "sent_at REAL NOT NULL DEFAULT 0, sends INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (jid, sub))",
    "jid, entry, created_at, expires_at, entry_id, sent_at, sends",
    ("CREATE INDEX IF NOT EXISTS outbox_expires ON outbox(expires_at)",),
)

DC_TABLES = {"jobs": _DC_JOBS}
MOM_TABLES = {"acks": _MOM_ACKS, "outbox": _MOM_OUTBOX}


def add_columns(db: sqlite3.Connection, table: str, columns: dict[str, str]) -> list[str]:
    """Add each missing column (``name -> declaration with a default``); returns those added.

    ``ALTER TABLE ... ADD COLUMN`` keeps every row (with the default); concurrent openers
    check again under ``BEGIN IMMEDIATE``, so only one of them adds a column.
    """
    def missing() -> list[str]:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        return [name for name in columns if name not in have]

    if not missing():
        return []
    db.execute("BEGIN IMMEDIATE")
    try:
        todo = missing()
        for name in todo:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {columns[name]}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return todo


def _has_sub(db: sqlite3.Connection, table: str) -> bool:
    return any(row[1] == "sub" for row in db.execute(f"PRAGMA table_info({table})"))


def add_sub_keys(db: sqlite3.Connection, tables: dict[str, tuple[str, str, tuple[str, ...]]]) -> list[str]:
    """Rebuild each table that lacks the ``sub`` key column; returns the tables rebuilt.

    ``db`` must be in autocommit mode (``isolation_level=None``), as the ledgers open it.
    """
    todo = [t for t in tables if not _has_sub(db, t)]
    if not todo:
        return []
    done = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for table in todo:
            if _has_sub(db, table):  # another process rebuilt it while we waited for the lock
                continue
            create, columns, indexes = tables[table]
            db.execute(f"DROP TABLE IF EXISTS {table}__new")
            db.execute(create)
            db.execute(f"INSERT INTO {table}__new ({columns}, sub) SELECT {columns}, '' FROM {table}")
            db.execute(f"DROP TABLE {table}")
            db.execute(f"ALTER TABLE {table}__new RENAME TO {table}")
            for index in indexes:
                db.execute(index)
            done.append(table)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return done

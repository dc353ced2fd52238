"""The default state backend: one SQLite file (standard library ``sqlite3``), WAL mode, versioned schema.

Each thread gets its own connection (SQLite connections are not shared between threads), so the event loop's cheap
reads never wait behind a worker thread's commit. WAL lets the ``slotserve keys`` commands write while the server
reads. The file is created readable by its owner only: it holds key digests.
"""

import os
import sqlite3
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from app.errors import StateError
from app.state.base import KeyConflict, KeyRecord, StateStore
from app.state.sql import SQLAssignments

# Each entry moves the schema one version up; never edit one that has shipped, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        client       TEXT NOT NULL,
        admin        INTEGER NOT NULL DEFAULT 0,
        digest       TEXT NOT NULL UNIQUE,
        created_at   REAL NOT NULL,
        last_used_at REAL,
        revoked_at   REAL
    );
    CREATE INDEX api_keys_client ON api_keys (client);
    """,
    """
    CREATE TABLE assignments (
        client         TEXT PRIMARY KEY,
        model          TEXT NOT NULL,
        version        INTEGER,
        max_batch_size INTEGER,
        max_delay_us   INTEGER,
        failed         TEXT,
        updated_at     REAL NOT NULL
    );
    """,
    """
    ALTER TABLE assignments ADD COLUMN replica TEXT NOT NULL DEFAULT '';
    ALTER TABLE assignments ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
_BUSY_TIMEOUT_MS = 10_000


class SQLiteState(SQLAssignments, StateStore):
    """State in one SQLite file. Commits are durable (``synchronous=FULL``) before a call returns."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        self._main_name, self._wal_name = str(self.path), str(self.path) + "-wal"
        self.location = str(self.path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            if not self.path.exists():
                if not create:
                    raise StateError(f"there is no state file {self.location} (check --state / SLOTSERVE_STATE)")
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            migrate(self._conn())
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise StateError(f"cannot open the state file {self.location}: {exc}") from None

    # ---- keys ------------------------------------------------------------------------------------------------

    def add_key(self, record: KeyRecord) -> None:
        try:
            with self._write() as conn:
                conn.execute("INSERT INTO api_keys (id, client, admin, digest, created_at) VALUES (?, ?, ?, ?, ?)",
                             (record.id, record.client, int(record.admin), record.digest, record.created_at))
        except sqlite3.IntegrityError:
            raise KeyConflict(f"key id {record.id} is taken") from None

    def active_keys(self) -> list[KeyRecord]:
        rows = self._conn().execute(
            "SELECT id, client, admin, digest, created_at, last_used_at FROM api_keys "
            "WHERE revoked_at IS NULL ORDER BY created_at, id").fetchall()
        return [KeyRecord(i, c, bool(a), d, created, used) for i, c, a, d, created, used in rows]

    def revoke_keys(self, client: str, key_id: str | None = None) -> int:
        query = "UPDATE api_keys SET revoked_at = ? WHERE client = ? AND revoked_at IS NULL"
        args: tuple = (time.time(), client)
        if key_id is not None:
            query, args = query + " AND id = ?", (*args, key_id)
        with self._write() as conn:
            return conn.execute(query, args).rowcount

    def record_key_use(self, used: Mapping[str, float]) -> None:
        if not used:
            return
        with self._write() as conn:
            conn.executemany("UPDATE api_keys SET last_used_at = ? WHERE id = ? "
                             "AND (last_used_at IS NULL OR last_used_at < ?)",
                             [(at, key_id, at) for key_id, at in used.items()])

    # ---- assignments (the queries are sql.py's) ----------------------------------------------------------------------

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        return self._conn().execute(sql, args).fetchall()

    def _write_rows(self, sql: str, args: Sequence[Any] = ()) -> tuple[int, list[tuple]]:
        with self._write() as conn:
            cursor = conn.execute(sql, args)
            rows = cursor.fetchall()
            return cursor.rowcount, rows

    # ---- plumbing --------------------------------------------------------------------------------------------

    def change_marker(self) -> Hashable:
        # Every commit, by any connection of any process, appends to the WAL file (a checkpoint then rewinds it, and
        # the next commit writes it again): its size and modification time change. One stat call costs ~1 us; a
        # query ~20 us, on every request.
        try:
            wal = os.stat(self._wal_name)
        except FileNotFoundError:  # no WAL between connections: the main file says it all
            main = os.stat(self._main_name)
            return "main", main.st_size, main.st_mtime_ns
        return "wal", wal.st_size, wal.st_mtime_ns

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _write(self) -> "_Transaction":
        return _Transaction(self._conn())


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one writer at a time, across processes."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: type | None, *_: object) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; return the version found. Refuses a newer schema.

    A file already at this version is only read, so opening it never writes (``keys list`` on a read-only copy).
    """
    if _version(conn) == SCHEMA_VERSION:
        return SCHEMA_VERSION
    with _Transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        found = _version(conn)
        if found > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"its schema version {found} is newer than this slotserve's "
                                        f"({SCHEMA_VERSION}); upgrade slotserve")
        for script in MIGRATIONS[found:]:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    return found


def _version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
    except sqlite3.OperationalError:  # no such table: a new file
        return 0
    return row[0] if row else 0

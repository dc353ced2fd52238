"""The shared state backend: one PostgreSQL database that several server replicas use at once (psycopg 3).

A small connection pool serves every thread. The assignment queries are sql.py's, the schema is versioned like the
SQLite file's (migrations serialized across replicas by an advisory lock), and the key ring's change marker is a
value a daemon thread polls once a second, so a request never waits for the database to check its key.

Errors: opening raises ``StateError`` with a one-line reason naming the database. At run time every database
failure (unreachable, timed out, refused) becomes ``StateUnavailable`` (a 503 with Retry-After when it reaches a
client: loads, unloads and takeovers wait for the database; predictions do not need it), raised to the caller (the
registry calls the store through ``asyncio.to_thread``) after waiting at most ``timeout_s`` for a connection. Its
message says only that the state store is away (clients need not learn where it lives); its ``__cause__`` is
psycopg's error, for the server's log, and the poller logs the outage once. A taken key id is ``KeyConflict``. The
pool reconnects by itself when the database is back. No message ever carries the URL's password: ``location`` is
the URL without it, and reasons are scrubbed of it.
"""

import logging
import threading
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from app.errors import StateError, StateUnavailable
from app.state.base import KeyConflict, KeyRecord, StateStore
from app.state.sql import SQLAssignments

log = logging.getLogger("slotserve.state")
# the pool warns at each reconnection attempt while the database is away; the poller says it once, with the reason
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

SCHEMES = ("postgresql://", "postgres://")
# The SQLite file's three versions in PostgreSQL's types: times are DOUBLE PRECISION (REAL is float4, which loses
# seconds), SQLite's 64-bit INTEGER is BIGINT, and ``admin`` a BOOLEAN. Never edit one that has shipped; append.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        client       TEXT NOT NULL,
        admin        BOOLEAN NOT NULL DEFAULT FALSE,
        digest       TEXT NOT NULL UNIQUE,
        created_at   DOUBLE PRECISION NOT NULL,
        last_used_at DOUBLE PRECISION,
        revoked_at   DOUBLE PRECISION
    );
    CREATE INDEX api_keys_client ON api_keys (client);
    """,
    """
    CREATE TABLE assignments (
        client         TEXT PRIMARY KEY,
        model          TEXT NOT NULL,
        version        BIGINT,
        max_batch_size BIGINT,
        max_delay_us   BIGINT,
        failed         TEXT,
        updated_at     DOUBLE PRECISION NOT NULL
    );
    """,
    """
    ALTER TABLE assignments ADD COLUMN replica TEXT NOT NULL DEFAULT '';
    ALTER TABLE assignments ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
MIGRATION_LOCK = 0x736C6F74  # pg_advisory_xact_lock's key: "slot", the same in every replica
CONNECT_TIMEOUT_S = 5  # an unreachable database fails the open (and a pool checkout) this fast
RECONNECT_S = 10.0  # the pool's backoff for one lost connection stops here; the next call (or poll) starts afresh
STATEMENT_TIMEOUT_MS = 10_000  # every statement; a migration's (a few DDL statements) fits easily
LOCK_TIMEOUT_MS = 5_000
POLL_S = 1.0  # how often the key marker is read: a revocation reaches every replica within about this
# Rows of api_keys are never deleted, and revoked_at is only ever set once: each add moves the first count, each
# revocation the second. The maxima also catch whatever an operator does to the table by hand.
MARKER = "SELECT count(*), count(revoked_at), max(created_at), max(revoked_at) FROM api_keys"
_KEY_COLUMNS = "id, client, admin, digest, created_at, last_used_at"


def is_postgres_url(location: str) -> bool:
    return location.startswith(SCHEMES)


class PostgresState(SQLAssignments, StateStore):
    """State in a PostgreSQL database shared by every replica. Commits are durable before a call returns."""

    shared = True

    def __init__(self, url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """Connect (within ``timeout_s``: also how long a call waits for a pooled connection before it fails),
        bring the schema up to date, start the pool and the key poller."""
        self.location = redact(url)
        self._url, self._secrets = url, _passwords(url)
        self._stop = threading.Event()
        self._marker: Hashable = None
        self._keys: list[KeyRecord] | None = None  # the active keys as of ``_marker`` (the poller keeps both)
        self._unreachable = False
        self._poll_lock = threading.Lock()  # one poll at a time: a marker never goes back, an outage logs once
        kwargs: dict[str, Any] = {"autocommit": True, "application_name": "slotserve"}
        self._kwargs = kwargs
        try:
            given = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StateError(f"cannot open the state database {self.location}: {self._reason(exc)}") from None
        # fail fast on an unreachable host, and notice a dead peer on an idle connection (only where not set)
        for name, value in (("connect_timeout", max(1, round(timeout_s))), ("keepalives_idle", 10),
                            ("keepalives_interval", 5), ("keepalives_count", 3), ("tcp_user_timeout", 10_000)):
            if name not in given:
                kwargs[name] = value
        if "options" not in given:  # a hung commit or a held lock fails the call instead of holding a thread
            kwargs["options"] = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
        try:
            with psycopg.connect(url, **kwargs) as conn:  # one connection first: its error says why, a pool's not
                migrate(conn)
            # its threads are pg-state-*: app/serving.py treats threads named slot* at exit as abandoned work
            self._pool = ConnectionPool(url, kwargs=kwargs, min_size=1, max_size=4, open=False, timeout=timeout_s,
                                        reconnect_timeout=RECONNECT_S, check=ConnectionPool.check_connection,
                                        name="pg-state")
            self._pool.open(wait=True, timeout=timeout_s * 2)
        except psycopg.Error as exc:
            self.close()
            raise StateError(f"cannot open the state database {self.location}: {self._reason(exc)}") from None
        self._poll()
        self._poller = threading.Thread(target=self._poll_forever, name="pg-state-poller", daemon=True)
        self._poller.start()

    # ---- keys ------------------------------------------------------------------------------------------------

    def add_key(self, record: KeyRecord) -> None:
        try:
            self._write_rows("INSERT INTO api_keys (id, client, admin, digest, created_at) VALUES (?, ?, ?, ?, ?)",
                             (record.id, record.client, record.admin, record.digest, record.created_at))
        except StateUnavailable as exc:
            if isinstance(exc.__cause__, errors.UniqueViolation):  # the id (or the digest) is taken
                raise KeyConflict(f"key id {record.id} is taken") from None
            raise
        self._poll()  # this process's own key ring sees the change at once, as with SQLite

    def active_keys(self) -> list[KeyRecord]:
        # the poller's copy, read with the marker the key ring last saw: the ring re-reads the keys on the event
        # loop when the marker moves, and must not wait for the database there
        if self._keys is not None:
            return list(self._keys)
        return self._read_keys()

    def _read_keys(self) -> list[KeyRecord]:
        rows = self._read(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, id")
        return [KeyRecord(*row) for row in rows]

    def revoke_keys(self, client: str, key_id: str | None = None) -> int:
        query = "UPDATE api_keys SET revoked_at = ? WHERE client = ? AND revoked_at IS NULL"
        args: tuple = (time.time(), client)
        if key_id is not None:
            query, args = query + " AND id = ?", (*args, key_id)
        count = self._write_rows(query, args)[0]
        self._poll()
        return count

    def record_key_use(self, used: Mapping[str, float]) -> None:
        if not used:
            return
        with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(_pg("UPDATE api_keys SET last_used_at = ? WHERE id = ? "
                                   "AND (last_used_at IS NULL OR last_used_at < ?)"),
                               [(at, key_id, at) for key_id, at in used.items()])

    # ---- assignments (the queries are sql.py's) ----------------------------------------------------------------

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._connection() as conn:
            return conn.execute(_pg(sql), args).fetchall()

    def _write_rows(self, sql: str, args: Sequence[Any] = ()) -> tuple[int, list[tuple]]:
        with self._connection() as conn, conn.transaction():
            cursor = conn.execute(_pg(sql), args)
            rows = cursor.fetchall() if cursor.description is not None else []
            return cursor.rowcount, rows

    # ---- plumbing --------------------------------------------------------------------------------------------

    def change_marker(self) -> Hashable:
        # never a query: the event loop calls this on every request; the poller thread keeps it current
        return self._marker

    def close(self) -> None:
        self._stop.set()
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()  # first: a poll waiting for a connection gives up at once
        poller = getattr(self, "_poller", None)
        if poller is not None:
            poller.join()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection (autocommit: a read is one round trip; writes open a transaction); a database
        failure becomes ``StateUnavailable`` (its cause: psycopg's error)."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise StateUnavailable(f"The state store is unavailable ({type(exc).__name__}); retry shortly.") from exc

    def _poll_forever(self) -> None:
        while not self._stop.wait(POLL_S):
            self._poll()

    def _poll(self) -> None:
        """Read the key marker; when the database is away, say so once and keep the last value (the cached keys
        keep working), and say when it is back."""
        with self._poll_lock:
            try:
                with self._connection() as conn:
                    marker = tuple(conn.execute(MARKER).fetchone())
                if marker != self._marker:  # the keys with the marker that says they changed: one snapshot
                    self._keys = self._read_keys()
            except StateUnavailable as exc:
                if not self._unreachable and not self._stop.is_set():
                    log.warning("the state database %s is unavailable (%s); API keys are checked against the last "
                                "ones read until it is back", self.location, self._why_away(exc))
                self._unreachable = True
                return
            if self._unreachable:
                log.warning("the state database %s is reachable again", self.location)
                self._unreachable = False
            self._marker = marker

    def _why_away(self, failed: StateUnavailable) -> str:
        """libpq's reason the database is away (a pool only says it timed out): one connection attempt."""
        try:
            psycopg.connect(self._url, **self._kwargs).close()
        except psycopg.Error as exc:
            return self._reason(exc)
        return self._reason(failed.__cause__ or failed)

    def _reason(self, exc: BaseException) -> str:
        """The error on one line, without the password (libpq does not print it; scrubbed all the same)."""
        reason = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        return reason


def migrate(conn: psycopg.Connection) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; return the version found. Refuses a newer schema.

    A database already at this version is only read. Otherwise the migration runs in one transaction holding an
    advisory lock, so replicas starting at once take turns: the first migrates, the others find it done.
    """
    found = _version(conn)
    if found == SCHEMA_VERSION:
        return found
    _refuse_newer(found)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        found = _version(conn)
        _refuse_newer(found)
        if found == SCHEMA_VERSION:  # another replica migrated while this one waited for the lock
            return found
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        for script in MIGRATIONS[found:]:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
    return found


def _version(conn: psycopg.Connection) -> int:
    # The catalog read as a query (the statement's snapshot), never to_regclass: its cached "no such table" outlives
    # the lock wait, and a replica would then find a schema another replica just committed missing.
    if not conn.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_tables WHERE schemaname = current_schema() "
                        "AND tablename = 'schema_version')").fetchone()[0]:  # a new database
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return row[0] if row else 0


def _refuse_newer(found: int) -> None:
    if found > SCHEMA_VERSION:
        raise psycopg.DatabaseError(f"its schema version {found} is newer than this slotserve's ({SCHEMA_VERSION}); "
                                    "upgrade slotserve")


def _pg(sql: str) -> str:
    """sql.py's ``?`` placeholders in psycopg's style (its queries hold no other ``?`` and no ``%``)."""
    return sql.replace("?", "%s")


def redact(url: str) -> str:
    """The URL without its password (in the user part or as a ``password`` parameter), for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _passwords(url: str) -> list[str]:
    """Every form the URL's password may take in a message, longest first."""
    parts = urlsplit(url)
    found = [v for k, v in parse_qsl(parts.query) if k == "password"]
    userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    if ":" in userinfo:
        raw = userinfo.split(":", 1)[1]
        found += [raw, unquote(raw)]
    return sorted({p for p in found if p}, key=len, reverse=True)

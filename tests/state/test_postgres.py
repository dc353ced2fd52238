"""The PostgreSQL state database, against a real server (one per session): schema versions, replicas opening it
at once, one-line errors without the password, keys followed across stores by the poller, an outage, the CLI."""

import json
import logging
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from app.errors import StateError, StateUnavailable
from app.state import Assignment, KeyRing, PostgresState, create_key, open_state
from app.state.postgres import SCHEMA_VERSION
from tests.pg import PostgresServer
from tests.process import free_port, run

DEADLINE_S = 15  # generous: the poller reads once a second; a slow machine must not fail the test


def _eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _next_xid(url: str) -> int:
    """The next transaction id: it moves only when some transaction writes."""
    with psycopg.connect(url) as db:
        return int(db.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()[0])


def test_a_fresh_database_gets_the_schema_keeps_keys_and_is_only_read_once_up_to_date(pg_database: str) -> None:
    store = open_state(pg_database)
    assert isinstance(store, PostgresState) and store.shared
    key, record = create_key(store, "alice", admin=True)
    store.close()
    with psycopg.connect(pg_database) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        types = dict(db.execute("SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = 'public'").fetchall())
    # float4 would lose seconds of a time since the epoch
    assert {types[c] for c in ("api_keys.created_at", "api_keys.revoked_at", "assignments.updated_at")} == {
        "double precision"}
    before = _next_xid(pg_database)
    reopened = open_state(pg_database)
    assert reopened.active_keys() == [record]
    assert KeyRing(reopened).authenticate(key).client == "alice"
    reopened.close()
    assert _next_xid(pg_database) == before  # opening an up-to-date database wrote nothing


def test_a_newer_schema_is_refused_in_one_line(pg_database: str) -> None:
    PostgresState(pg_database).close()
    with psycopg.connect(pg_database) as db:
        db.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StateError) as raised:
        PostgresState(pg_database)
    assert "newer than this slotserve" in str(raised.value) and "\n" not in str(raised.value)


def test_replicas_opening_an_empty_database_at_once_all_succeed(pg_database: str) -> None:
    start = threading.Barrier(6)
    opened: list[PostgresState] = []
    failures: list[BaseException] = []

    def open_one() -> None:
        start.wait()
        try:
            opened.append(PostgresState(pg_database))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in opened:
        store.close()
    assert failures == [] and len(opened) == 6
    with psycopg.connect(pg_database) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    port = free_port()  # nothing listens there
    for url in (f"postgresql://slotserve:hunter2-secret@127.0.0.1:{port}/slotserve",
                f"postgres://slotserve@127.0.0.1:{port}/slotserve?password=hunter2-secret&sslmode=disable"):
        with pytest.raises(StateError) as raised:
            open_state(url)
        message = str(raised.value)
        assert "hunter2" not in message and "\n" not in message
        assert f"slotserve@127.0.0.1:{port}/slotserve" in message and "refused" in message


def test_a_key_ring_follows_keys_added_and_revoked_through_another_replica(pg_database: str) -> None:
    server, other = PostgresState(pg_database), PostgresState(pg_database)
    try:
        ring = KeyRing(server)
        key, record = create_key(other, "bob")
        assert _eventually(lambda: ring.authenticate(key) is not None)
        assert ring.authenticate(key).client == "bob"
        create_key(other, "bob")  # a second key, so revoking one of two must be noticed too
        other.revoke_keys("bob", record.id)
        assert _eventually(lambda: ring.authenticate(key) is None)
    finally:
        server.close(), other.close()


def test_while_the_database_is_away_cached_keys_work_calls_are_unavailable_and_it_recovers(
        postgres: PostgresServer, pg_database: str, caplog: pytest.LogCaptureFixture) -> None:
    store = PostgresState(pg_database.replace("postgres@", "postgres:hunter2-secret@"), timeout_s=1)
    key, _ = create_key(store, "carol")
    ring = KeyRing(store)
    caplog.set_level(logging.WARNING, logger="slotserve.state")
    postgres.stop()
    try:
        assert _eventually(lambda: "checked against the last ones read" in caplog.text)
        assert ring.authenticate(key).client == "carol"  # no query: the marker is the last one polled
        with pytest.raises(StateUnavailable) as raised:  # a 503 for an API client
            store.record_assignment(Assignment("carol", "iris", replica="r1"))
        assert "unavailable" in str(raised.value) and "hunter2" not in str(raised.value)
        time.sleep(2.5)  # more polls fail meanwhile: they must not log again
    finally:
        postgres.start()
    assert _eventually(lambda: "reachable again" in caplog.text)
    warnings = [r.getMessage() for r in caplog.records if r.name == "slotserve.state"]
    assert sum("checked against the last ones read" in w for w in warnings) == 1
    assert not any("hunter2" in w for w in warnings)
    assert store.record_assignment(Assignment("carol", "iris", replica="r1")).epoch == 1
    store.close()


def test_the_cli_manages_keys_and_shows_assignments_in_a_database(pg_database: str) -> None:
    url = pg_database.replace("postgres@", "postgres:hunter2-secret@")  # trust auth: any password is accepted
    added = run("keys", "add", "dave", "--state", url)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    listed = run("keys", "list", "--json", "--state", url)
    assert [k["client"] for k in json.loads(listed.stdout)] == ["dave"]
    store = open_state(pg_database)
    assert KeyRing(store).authenticate(key).client == "dave"
    store.record_assignment(Assignment("dave", "iris", replica="replica-a"))
    store.close()
    shown = run("state", "show", "--state", url)
    assert shown.returncode == 0 and shown.stdout.splitlines()[1].split()[:4] == ["dave", "iris", "replica-a", "1"]
    revoked = run("keys", "revoke", "dave", "--state", url)
    assert revoked.returncode == 0
    store = open_state(pg_database)
    assert store.active_keys() == [] and store.assignments()[0].replica == "replica-a"
    store.close()
    refused = run("state", "clear", "--state", url)  # shared: running replicas would drop what it forgets
    assert refused.returncode == 2 and "--replica ID" in refused.stderr  # and nothing is forgotten (below)
    other = run("state", "clear", "--replica", "replica-b", "--state", url)
    assert other.returncode == 0 and "forgot 0 assignments held by replica replica-b" in other.stdout
    cleared = run("state", "clear", "--replica", "replica-a", "--state", url)
    assert cleared.returncode == 0 and "forgot 1 assignment held by replica replica-a" in cleared.stdout
    for done in (added, listed, shown, revoked, refused, other, cleared):
        assert "hunter2" not in done.stdout + done.stderr
    away = run("state", "show", "--state", f"postgresql://u:hunter2-secret@127.0.0.1:{free_port()}/db")
    assert away.returncode == 2 and away.stderr.count("\n") == 1 and "hunter2" not in away.stderr


def test_statements_and_lock_waits_are_bounded_and_keys_are_read_with_their_marker(pg_database: str) -> None:
    store = PostgresState(pg_database)
    try:
        assert store._read("SHOW statement_timeout") == [("10s",)] and store._read("SHOW lock_timeout") == [("5s",)]
        create_key(store, "alice")
        reads = []
        store._read_keys = lambda: reads.append(1) or []  # the key ring's refresh must not query on the event loop
        assert [k.client for k in KeyRing(store)._by_digest.values()] == ["alice"] and reads == []
    finally:
        store.close()

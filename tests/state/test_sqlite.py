"""The SQLite state file: schema versions, durability across opens, and change detection across connections."""

import sqlite3
import threading
from pathlib import Path

import pytest

from app.errors import StateError
from app.state import KeyRing, SQLiteState, create_key
from app.state.sqlite import SCHEMA_VERSION


def test_a_new_file_gets_the_current_schema_and_keeps_keys_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteState(path)
    key, record = create_key(store, "alice", admin=True)
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reopened = SQLiteState(path)
    assert reopened.active_keys() == [record]
    assert KeyRing(reopened).authenticate(key).client == "alice"
    reopened.close()


def test_a_newer_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SQLiteState(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StateError) as raised:
        SQLiteState(path)
    assert "newer than this slotserve" in str(raised.value) and "\n" not in str(raised.value)


def test_not_a_database_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"not sqlite" * 100)
    with pytest.raises(StateError, match="cannot open the state file"):
        SQLiteState(path)


def test_the_key_ring_follows_changes_made_by_another_connection(tmp_path: Path) -> None:
    server, cli = SQLiteState(tmp_path / "s.db"), SQLiteState(tmp_path / "s.db")
    ring = KeyRing(server)
    assert not ring.has_keys()
    key, _ = create_key(cli, "bob")
    assert ring.authenticate(key).client == "bob"
    cli.revoke_keys("bob")
    assert ring.authenticate(key) is None and not ring.has_keys()
    server.close(), cli.close()


def test_last_uses_are_written_by_flush_and_never_go_back(tmp_path: Path) -> None:
    store = SQLiteState(tmp_path / "s.db")
    key, record = create_key(store, "carol")
    ring = KeyRing(store)
    ring.authenticate(key)
    thread = threading.Thread(target=ring.flush)  # the server flushes from a worker thread
    thread.start(), thread.join()
    used = store.active_keys()[0].last_used_at
    assert used is not None and used >= record.created_at
    store.record_key_use({record.id: used - 100})
    assert store.active_keys()[0].last_used_at == used
    store.close()


def test_one_key_of_several_can_be_revoked_by_id(tmp_path: Path) -> None:
    store = SQLiteState(tmp_path / "s.db")
    old, old_record = create_key(store, "dave")
    new, _ = create_key(store, "dave")  # rotation: a second key, then the old one goes
    assert store.revoke_keys("dave", old_record.id) == 1
    ring = KeyRing(store)
    assert ring.authenticate(old) is None and ring.authenticate(new).client == "dave"
    store.close()


def test_opening_an_up_to_date_file_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SQLiteState(path).close()
    with sqlite3.connect(path) as watcher:
        before = watcher.execute("PRAGMA data_version").fetchone()
        store = SQLiteState(path)
        store.active_keys()
        store.close()
        assert watcher.execute("PRAGMA data_version").fetchone() == before  # no other connection committed


def test_a_missing_file_is_refused_when_it_must_exist(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="there is no state file"):
        SQLiteState(tmp_path / "typo.db", create=False)
    assert not (tmp_path / "typo.db").exists()

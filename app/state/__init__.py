"""What must outlive the process: API keys, and client -> model assignments.

One small interface, ``StateStore``, with one backend per kind of location: a SQLite file by default, or a
PostgreSQL database (a ``postgresql://`` URL) that several replicas share. The server opens it once at start-up; the
``slotserve keys`` commands open the same state from another process, and the server sees their changes on its next
request (within about a second with PostgreSQL). Nothing here imports TensorFlow.
"""

from app.state.base import Assignment, KeyConflict, KeyRecord, StateStore
from app.state.keys import KeyRing, Principal, create_key, key_digest
from app.state.postgres import PostgresState, is_postgres_url
from app.state.sqlite import SQLiteState


def open_state(location: str, create: bool = True) -> StateStore:
    """The state store at ``location``: a ``postgresql://`` (or ``postgres://``) URL, whose database must exist
    (its schema is created; ``create`` does not apply), else a SQLite file path (created with its schema when
    missing, unless ``create`` is false). Raises ``StateError`` with a one-line reason when it cannot be opened or
    migrated.
    """
    if is_postgres_url(location):
        return PostgresState(location)
    return SQLiteState(location, create)


__all__ = ["Assignment", "KeyConflict", "KeyRecord", "KeyRing", "PostgresState", "Principal", "SQLiteState", "StateStore", "create_key", "key_digest", "open_state"]

"""What must outlive the process: API keys, and client -> model assignments.

One small interface, ``StateStore``, with one backend per kind of location: a SQLite file by default. The server
opens it once at start-up; the ``slotserve keys`` commands open the same file from another process, and the server
sees their changes on its next request. Nothing here imports TensorFlow.
"""

from app.state.base import Assignment, KeyConflict, KeyRecord, StateStore
from app.state.keys import KeyRing, Principal, create_key, key_digest
from app.state.sqlite import SQLiteState


def open_state(location: str, create: bool = True) -> StateStore:
    """The state store at ``location``: a SQLite file path (created with its schema when missing, unless
    ``create`` is false). Raises ``StateError`` with a one-line reason when it cannot be opened or migrated.
    """
    return SQLiteState(location, create)


__all__ = ["Assignment", "KeyConflict", "KeyRecord", "KeyRing", "Principal", "SQLiteState", "StateStore", "create_key", "key_digest", "open_state"]

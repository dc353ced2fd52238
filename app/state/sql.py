"""The assignment queries, written once in the SQL that SQLite and PostgreSQL both speak.

A backend supplies two methods: ``_read(sql, args)`` (rows) and ``_write_rows(sql, args)`` (one statement in a write
transaction of its own, durable before it returns: (rowcount, rows)). Placeholders are ``?``; a backend whose driver
wants another style translates them. Every ownership change is one statement, so it is atomic on both backends.
"""

import time
from collections.abc import Sequence
from typing import Any

from app.state.base import Assignment

COLUMNS = "client, model, version, max_batch_size, max_delay_us, failed, updated_at, replica, epoch"
_VALUES = (f"INSERT INTO assignments ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT (client) DO UPDATE "
           "SET model = excluded.model, version = excluded.version, max_batch_size = excluded.max_batch_size, "
           "max_delay_us = excluded.max_delay_us, failed = excluded.failed, updated_at = excluded.updated_at, "
           "replica = excluded.replica")
# the holder token (replica, epoch) moves on unless the stored row already carries the writer's
RECORD = (_VALUES + ", epoch = CASE WHEN assignments.replica = excluded.replica AND assignments.epoch = ? "
          "THEN assignments.epoch ELSE assignments.epoch + 1 END RETURNING epoch")
RECORD_IF_HELD = ("UPDATE assignments SET model = ?, version = ?, max_batch_size = ?, max_delay_us = ?, failed = ?, "
                  "updated_at = ? WHERE client = ? AND replica = ? AND epoch = ?")
TAKE_OVER = (f"UPDATE assignments SET replica = ?, epoch = epoch + 1, updated_at = ? "
             f"WHERE client = ? AND replica = ? AND epoch = ? RETURNING {COLUMNS}")
GIVE_BACK = "UPDATE assignments SET replica = ?, epoch = ? WHERE client = ? AND replica = ? AND epoch = ?"
SELECT_ONE = f"SELECT {COLUMNS} FROM assignments WHERE client = ?"
SELECT_ALL = f"SELECT {COLUMNS} FROM assignments ORDER BY updated_at, client"
FORGET = "DELETE FROM assignments WHERE client = ?"
CLEAR = "DELETE FROM assignments"
_CHUNK = 500


class SQLAssignments:
    """``StateStore``'s assignment methods over ``_read`` and ``_write_rows``."""

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        raise NotImplementedError

    def _write_rows(self, sql: str, args: Sequence[Any] = ()) -> tuple[int, list[tuple]]:
        raise NotImplementedError

    def record_assignment(self, assignment: Assignment) -> Assignment:
        a = assignment
        updated = a.updated_at or time.time()
        _, rows = self._write_rows(RECORD, (a.client, a.model, a.version, a.max_batch_size, a.max_delay_us,
                                            a.failed, updated, a.replica, a.epoch))
        return Assignment(a.client, a.model, a.version, a.max_batch_size, a.max_delay_us, a.failed, updated,
                          a.replica, rows[0][0])

    def record_if_held(self, assignment: Assignment) -> bool:
        a = assignment
        count, _ = self._write_rows(RECORD_IF_HELD, (a.model, a.version, a.max_batch_size, a.max_delay_us, a.failed,
                                                     a.updated_at or time.time(), a.client, a.replica, a.epoch))
        return count == 1

    def take_over(self, seen: Assignment, replica: str) -> Assignment | None:
        _, rows = self._write_rows(TAKE_OVER, (replica, time.time(), seen.client, seen.replica, seen.epoch))
        return Assignment(*rows[0]) if rows else None

    def give_back(self, taken: Assignment, seen: Assignment) -> bool:
        count, _ = self._write_rows(GIVE_BACK, (seen.replica, seen.epoch, taken.client, taken.replica, taken.epoch))
        return count == 1

    def assignment(self, client: str) -> Assignment | None:
        rows = self._read(SELECT_ONE, (client,))
        return Assignment(*rows[0]) if rows else None

    def assignments_of(self, clients: Sequence[str]) -> list[Assignment]:
        found: list[Assignment] = []
        for start in range(0, len(clients), _CHUNK):  # a bounded number of placeholders per statement
            chunk = clients[start:start + _CHUNK]
            found += [Assignment(*row) for row in self._read(
                f"SELECT {COLUMNS} FROM assignments WHERE client IN ({', '.join('?' * len(chunk))})", chunk)]
        return found

    def assignments(self) -> list[Assignment]:
        return [Assignment(*row) for row in self._read(SELECT_ALL)]

    def forget_assignment(self, client: str) -> None:
        self._write_rows(FORGET, (client,))

    def clear_assignments(self, replica: str | None = None) -> int:
        if replica is None:
            return self._write_rows(CLEAR)[0]
        return self._write_rows(CLEAR + " WHERE replica = ?", (replica,))[0]

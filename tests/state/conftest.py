"""A fresh state store per test, for every backend: the contract tests run once per backend."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.state import PostgresState, SQLiteState, StateStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    # PostgreSQL: a fresh database on the session's server (tests/conftest.py), which starts on first use
    opened = SQLiteState(tmp_path / "state.db") if request.param == "sqlite" else PostgresState(
        request.getfixturevalue("pg_database"))
    yield opened
    opened.close()

"""A fresh state store per test, for every backend: the contract tests run once per backend."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.state import SQLiteState, StateStore


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    opened = SQLiteState(tmp_path / "state.db")
    yield opened
    opened.close()

"""Fixtures over the hostile store (built once per session, after the session's slot plan)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.partitions import SlotSpec
from app.settings import Settings
from tests.conftest import SLOT_MB, SLOTS, Server, open_server
from tests.helpers import DEVICE
from tests.hostile.hostile_store import build_hostile


@pytest.fixture(scope="session")
def hostile_store(tmp_path_factory: pytest.TempPathFactory, specs: tuple[SlotSpec, ...]) -> tuple[Path, dict]:
    directory = tmp_path_factory.mktemp("hostile")
    return directory, build_hostile(directory)


@pytest.fixture
def hostile_settings(hostile_store: tuple[Path, dict], tmp_path: Path) -> Settings:
    return Settings(model_dir=hostile_store[0], slots=SLOTS, slot_memory_mb=SLOT_MB, device=DEVICE,
                    state=str(tmp_path / "state.db"))


@pytest.fixture
async def hostile_server(hostile_settings: Settings) -> AsyncIterator[Server]:
    async with open_server(hostile_settings) as opened:
        yield opened

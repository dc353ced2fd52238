"""Fixtures over the second model store (SavedModels and .h5 files) used by the format and TF Serving tests."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.partitions import SlotSpec
from app.settings import Settings
from tests.conftest import SLOT_MB, SLOTS, Server, open_server
from tests.helpers import DEVICE
from tests.models import Reference
from tests.protocols.format_store import build_formats


@pytest.fixture(scope="session")
def format_store(tmp_path_factory: pytest.TempPathFactory,
                 specs: tuple[SlotSpec, ...]) -> tuple[Path, dict[str, Reference]]:
    """(directory, references), built once per session, after the session's slot plan."""
    directory = tmp_path_factory.mktemp("formats")
    return directory, build_formats(directory)


@pytest.fixture
def format_refs(format_store: tuple[Path, dict[str, Reference]]) -> dict[str, Reference]:
    return format_store[1]


@pytest.fixture
def format_settings(format_store: tuple[Path, dict[str, Reference]], tmp_path: Path) -> Settings:
    return Settings(model_dir=format_store[0], slots=SLOTS, slot_memory_mb=SLOT_MB, device=DEVICE, busy_timeout_s=30,
                    state=str(tmp_path / "state.db"))


@pytest.fixture
async def format_server(format_settings: Settings) -> AsyncIterator[Server]:
    async with open_server(format_settings) as opened:
        yield opened

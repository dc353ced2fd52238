"""One partition plan for the whole session (TensorFlow accepts one per process), real models, real HTTP."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tensorflow as tf
from fastapi import FastAPI

from app.api import create_app
from app.partitions import SlotSpec, plan_partitions
from app.registry import Registry
from app.settings import Settings
from app.state import open_state
from tests.helpers import DEVICE, HAS_GPU
from tests.models import Reference, build_store
from tests.pg import PostgresServer, fresh_database, postgres_server

SLOTS = 4
SLOT_MB = 16
BASE_URL = "http://127.0.0.1"  # a loopback Host: servers without keys answer only those
# TF32 off (tests/__init__.py also turns it off for the servers tests start): outputs are compared in float32
tf.config.experimental.enable_tensor_float_32_execution(False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` need a real GPU: skipped, saying so, on a host without one."""
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs a GPU; TensorFlow sees none on this host")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole session (deploy/local/postgres.sh), started on first use."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer) -> str:
    """The session server's ``slotserve`` database: shared by every test that asks for it."""
    return postgres.url


@pytest.fixture
def pg_database(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session server for one test (its URL), dropped after."""
    with fresh_database(postgres) as url:
        yield url


@pytest.fixture(scope="session")
def specs() -> tuple[SlotSpec, ...]:
    return plan_partitions(SLOTS, SLOT_MB, DEVICE)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="session")
def refs(model_dir: Path, specs: tuple[SlotSpec, ...]) -> dict[str, Reference]:
    return build_store(model_dir)


@pytest.fixture
def settings(model_dir: Path, refs: dict[str, Reference], tmp_path: Path) -> Settings:
    return Settings(model_dir=model_dir, slots=SLOTS, slot_memory_mb=SLOT_MB, device=DEVICE, busy_timeout_s=30,
                    state=str(tmp_path / "state.db"))


@dataclass
class Server:
    """An app with its lifespan running: ``http`` speaks to it, ``registry`` is the one it drives."""

    http: httpx.AsyncClient
    registry: Registry
    app: FastAPI


@asynccontextmanager
async def open_server(settings: Settings, restored: bool = True) -> AsyncIterator[Server]:
    """A fresh registry over the session's slots and the settings' state file, driven through real HTTP (ASGI) with
    its lifespan running (which puts back what the state file remembers; ``restored``: wait until it has)."""
    state = open_state(settings.state)
    registry = Registry.from_settings(settings, state)
    app = create_app(settings, registry, state)
    try:
        async with app.router.lifespan_context(app):
            if restored:
                await app.state.restoring
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=60) as http:
                yield Server(http, registry, app)
    finally:
        state.close()


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Server]:
    async with open_server(settings) as opened:
        yield opened

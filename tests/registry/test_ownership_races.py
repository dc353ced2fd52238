"""What a put-back (a restore, a takeover) does when the client acts meanwhile, and what every ownership step does
when the state store fails under it. Two registries in this process play replicas "a" and "b" over one SQLite file
marked shared (the SQL PostgreSQL runs too); ``down`` makes the store fail as an unreachable PostgreSQL does, with
``StateUnavailable``."""

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.errors import ClientNotFound, StateUnavailable
from app.partitions import SlotSpec
from app.registry import Registry
from app.registry import registry as registry_module
from app.settings import Settings
from app.state import SQLiteState
from tests.helpers import assert_rows_match, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio


class Flaky(SQLiteState):
    shared = True
    down = False

    def _read(self, sql: str, args=()) -> list[tuple]:  # noqa: ANN001
        if self.down:
            raise StateUnavailable("The state store is unavailable (test); retry shortly.")
        return super()._read(sql, args)

    def _write_rows(self, sql: str, args=()) -> tuple[int, list[tuple]]:  # noqa: ANN001
        if self.down:
            raise StateUnavailable("The state store is unavailable (test); retry shortly.")
        return super()._write_rows(sql, args)


@pytest.fixture
async def pair(settings: Settings, specs: tuple[SlotSpec, ...], tmp_path: Path
               ) -> AsyncIterator[tuple[Registry, Registry, Flaky]]:
    store = Flaky(tmp_path / "shared.db")
    a, b = (Registry(settings.model_copy(update={"replica_id": name, "ownership_check_s": 0.1}), specs, store)
            for name in ("a", "b"))
    yield a, b, store
    store.down = False
    await a.close(10)
    await b.close(10)
    store.close()


class Gate:
    """Admission of model 'tiny' waits at the gate while it is shut: a put-back of it is held before its load."""

    def __init__(self) -> None:
        self.shut, self.opened = False, threading.Event()

    def open(self) -> None:
        self.shut = False
        self.opened.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held, real = Gate(), registry_module.admit

    def admit(pinned, *args):  # noqa: ANN001, ANN202 - admit's own signature
        if pinned.name == "tiny" and held.shut:
            held.opened.wait(30)
        return real(pinned, *args)

    monkeypatch.setattr(registry_module, "admit", admit)
    yield held
    held.open()


async def _taking_over(b: Registry, refs: dict[str, Reference]) -> asyncio.Future:
    request = asyncio.ensure_future(b.predict("alice", rows_body(refs["tiny"])))
    while "alice" in b._taking or b.placement.get("alice") is None:  # claimed, taken over in the store, loading
        await asyncio.sleep(0.01)
    return request


async def test_a_clients_own_load_during_a_takeover_stands(pair, refs: dict[str, Reference], gate: Gate) -> None:
    a, b, store = pair
    await a.load("alice", "tiny")
    gate.shut = True
    request = await _taking_over(b, refs)
    result = await b.load("alice", "tiny2")  # the client's own load, answered 200 while the takeover waits
    gate.open()
    await asyncio.gather(request, return_exceptions=True)
    await b.operations.idle()
    assert result.record.model == "tiny2" and b.placement.get("alice").loaded.name == "tiny2"
    stored = store.assignment("alice")
    assert (stored.model, stored.replica, stored.epoch) == ("tiny2", "b", 2)
    assert_rows_match(await b.predict("alice", rows_body(refs["tiny2"])), refs["tiny2"])


async def test_an_unload_during_a_takeover_calls_it_off(pair, refs: dict[str, Reference], gate: Gate) -> None:
    a, b, store = pair
    await a.load("alice", "tiny")
    gate.shut = True
    request = await _taking_over(b, refs)
    result = await b.unload("alice")
    gate.open()
    outcome = (await asyncio.gather(request, return_exceptions=True))[0]
    await b.operations.idle()
    assert result.model == "tiny" and isinstance(outcome, ClientNotFound)
    assert store.assignment("alice") is None and len(b.placement) == 0
    assert await a.check_ownership() == 1 and len(a.placement) == 0  # "a" drops its copy: nobody holds alice


async def test_predictions_for_held_clients_go_on_while_the_store_is_away(pair, refs: dict[str, Reference]) -> None:
    a, _, store = pair
    await a.load("alice", "tiny")
    store.down = True
    for _ in range(5):  # past the ownership check's due time (0.1 s): the check is skipped, the client served
        assert_rows_match(await a.predict("alice", rows_body(refs["tiny"])), refs["tiny"])
        await asyncio.sleep(0.1)
    with pytest.raises(StateUnavailable):
        await a.unload("alice")  # an unload needs the store: refused before anything changes
    assert_rows_match(await a.predict("alice", rows_body(refs["tiny"])), refs["tiny"])
    store.down = False
    assert await a.check_ownership() == 0 and store.assignment("alice").replica == "a"


async def test_a_swap_the_store_could_not_record_keeps_serving_with_its_snapshot(pair, refs: dict[str, Reference]
                                                                                 ) -> None:
    a, _, store = pair
    await a.load("alice", "tiny")
    store.down = True
    with pytest.raises(StateUnavailable):
        await a.load("alice", "tiny2")
    loaded = a.placement.get("alice").loaded
    assert loaded.name == "tiny2" and loaded.file.path.exists()  # its pinned snapshot is kept, not the old one's
    store.down = False


async def test_a_first_load_the_store_could_not_record_is_dropped_by_the_next_check(pair) -> None:
    a, b, store = pair
    await a.load("alice", "tiny")
    store.down = True
    with pytest.raises(StateUnavailable):
        await b.load("alice", "tiny2")  # the client was told it failed
    store.down = False
    assert b.placement.get("alice") is not None  # loaded, unrecorded: a token that matches nothing
    assert await b.check_ownership() == 1 and len(b.placement) == 0
    assert await a.check_ownership() == 0 and store.assignment("alice").replica == "a"

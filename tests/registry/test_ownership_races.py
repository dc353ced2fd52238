"""What a put-back (a restore, a takeover) does when the client acts meanwhile, and what every ownership step does
when the state store fails under it. Two registries in this process play replicas "a" and "b" over one SQLite file
marked shared (the SQL PostgreSQL runs too); ``down`` makes the store fail as an unreachable PostgreSQL does, with
``StateUnavailable``."""

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.errors import ClientNotFound, ModelNotFound, ModelTooLarge, StateUnavailable
from app.partitions import SlotSpec
from app.registry import Registry
from app.registry import registry as registry_module
from app.settings import Settings
from app.state import SQLiteState
from tests.helpers import assert_rows_match, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio


class Flaky(SQLiteState):
    """A shared store that fails like an unreachable PostgreSQL: every statement while ``down``, or the next
    ``faults[prefix]`` statements that start with ``prefix``."""

    shared = True
    down = False

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.faults: dict[str, int] = {}

    def _fail(self, sql: str) -> None:
        hit = next((prefix for prefix, left in self.faults.items() if left and sql.startswith(prefix)), None)
        if hit is not None:
            self.faults[hit] -= 1
        if self.down or hit is not None:
            raise StateUnavailable("The state store is unavailable (test); retry shortly.")

    def _read(self, sql: str, args=()) -> list[tuple]:  # noqa: ANN001
        self._fail(sql)
        return super()._read(sql, args)

    def _write_rows(self, sql: str, args=()) -> tuple[int, list[tuple]]:  # noqa: ANN001
        self._fail(sql)
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
    """Admission of model 'tiny' waits at the gate while it is shut (a put-back of it is held before its load), then
    fails with ``ModelTooLarge`` if ``refuse`` is set."""

    def __init__(self) -> None:
        self.shut, self.refuse, self.opened = False, False, threading.Event()

    def open(self) -> None:
        self.shut = False
        self.opened.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held, real = Gate(), registry_module.admit

    def admit(pinned, *args):  # noqa: ANN001, ANN202 - admit's own signature
        if pinned.name == "tiny" and held.shut:
            held.opened.wait(30)
            if held.refuse:
                raise ModelTooLarge("Model 'tiny' does not fit this slot's memory (test).", model="tiny")
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


RECORD_IF_HELD, GIVE_BACK = "UPDATE assignments SET model = ?", "UPDATE assignments SET replica = ?, epoch = ?"


async def test_a_put_back_that_fails_after_the_clients_own_load_leaves_that_load_alone(
        pair, refs: dict[str, Reference], gate: Gate) -> None:
    a, b, store = pair
    await a.load("alice", "tiny")
    gate.shut = gate.refuse = True
    request = await _taking_over(b, refs)
    await b.load("alice", "tiny2")  # recorded at the takeover's epoch: (b, 2)
    gate.open()  # now the put-back's admission fails: it must not give alice back to "a"
    await asyncio.gather(request, return_exceptions=True)
    await b.operations.idle()
    stored = store.assignment("alice")
    assert (stored.model, stored.replica, stored.epoch) == ("tiny2", "b", 2)
    assert await b.check_ownership() == 0 and b.placement.get("alice").loaded.name == "tiny2"
    assert await a.check_ownership() == 1  # only one replica serves alice


async def test_a_takeover_whose_record_fails_keeps_the_model_it_loaded(pair, refs: dict[str, Reference]) -> None:
    a, b, store = pair
    await a.load("alice", "tiny")
    store.faults[RECORD_IF_HELD] = 1  # the takeover took the token, loaded, then could not record the model
    assert_rows_match(await b.predict("alice", rows_body(refs["tiny"])), refs["tiny"])
    await b.operations.idle()
    assert (store.assignment("alice").replica, store.assignment("alice").epoch) == ("b", 2)  # its token stands
    assert await b.check_ownership() == 0 and await a.check_ownership() == 1  # one replica serves alice


async def test_a_failed_put_back_whose_store_write_fails_leaves_no_slot_claimed(
        settings: Settings, specs: tuple[SlotSpec, ...], tmp_path: Path, refs: dict[str, Reference]) -> None:
    store = Flaky(tmp_path / "shared.db")
    (tmp_path / "empty").mkdir()
    a = Registry(settings.model_copy(update={"replica_id": "a"}), specs, store)
    b = Registry(settings.model_copy(update={"replica_id": "b", "model_dir": tmp_path / "empty"}), specs, store)
    try:
        await a.load("alice", "tiny")
        store.faults[GIVE_BACK] = 1  # "b" lacks the model, and then cannot give alice back
        with pytest.raises(ModelNotFound):
            await b.predict("alice", rows_body(refs["tiny"]))
        await b.operations.idle()
        assert len(b.placement) == 0  # nothing left claimed (a claimed slot would hold requests 30 s, then 503)
        # a double fault: the store now says "b" holds alice. Asked again, "b" puts her back as its own, fails, and
        # records it as a failed restore: explicit (404 with the reason from then on), never a request held forever
        with pytest.raises(ModelNotFound):
            await b.predict("alice", rows_body(refs["tiny"]))
        await b.operations.idle()
        assert store.assignment("alice").failed and len(b.placement) == 0
        with pytest.raises(ClientNotFound, match="could not be put back"):
            await b.predict("alice", rows_body(refs["tiny"]))
    finally:
        await a.close(10)
        await b.close(10)
        store.close()


@pytest.mark.parametrize("where", ["compare-and-set", "load"])
async def test_a_request_cancelled_while_its_takeover_runs_does_not_stop_it(
        pair, refs: dict[str, Reference], gate: Gate, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, store = pair
    await a.load("alice", "tiny")
    cas, take_over = asyncio.Event(), b.memory.take_over

    async def held_take_over(seen):  # noqa: ANN001, ANN202
        await cas.wait()
        return await take_over(seen)

    if where == "compare-and-set":
        monkeypatch.setattr(b.memory, "take_over", held_take_over)
    else:
        gate.shut = True
        cas.set()
    request = asyncio.ensure_future(b.predict("alice", rows_body(refs["tiny"])))
    while b.placement.get("alice") is None or (where == "load" and "alice" in b._taking):
        await asyncio.sleep(0.01)
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)
    cas.set(), gate.open()
    await b.operations.idle()
    assert (store.assignment("alice").replica, store.assignment("alice").epoch) == ("b", 2)
    assert b.placement.get("alice").loaded.name == "tiny" and len(b.operations) == 0

"""Replicas sharing one state store: takeovers, stale holders dropping their copies, restores that leave other
replicas' clients alone. Two registries in this process play two replicas (A and B) over one store.

Every test runs on a real PostgreSQL database, and on a SQLite file marked shared (the same SQL statements; a
second, independent check of the compare-and-set logic). tests/cluster runs real replica processes behind nginx.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from app.errors import ClientNotFound, ModelNotFound, NoFreeSlot
from app.partitions import SlotSpec
from app.registry import Registry
from app.registry.lifecycle import Phase
from app.settings import Settings
from app.state import SQLiteState, StateStore, open_state
from tests.helpers import assert_rows_match, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio


class SharedSQLite(SQLiteState):
    shared = True


@pytest.fixture(params=["postgresql", "sqlite"])
async def shared(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "postgresql":
        store = open_state(request.getfixturevalue("pg_database"))
    else:
        store = SharedSQLite(tmp_path / "shared.db")
    assert store.shared
    yield store
    store.close()


@pytest.fixture
def replica(specs: tuple[SlotSpec, ...]) -> Callable[..., Registry]:
    def make(settings: Settings, state: StateStore, name: str, slots: int | None = None) -> Registry:
        """A registry playing replica ``name`` over the session's slots (the first ``slots`` of them)."""
        return Registry(settings.model_copy(update={"replica_id": name}), specs[:slots], state)
    return make


async def _close(*registries: Registry) -> None:
    for registry in registries:
        await registry.close(10)


def _same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key in got:
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(expected[key]))


def _holder(state: StateStore, client: str) -> tuple[str, int]:
    stored = state.assignment(client)
    return stored.replica, stored.epoch


async def test_a_request_for_a_client_held_elsewhere_takes_it_over_and_waits_for_the_load(
        replica: Callable[..., Registry], settings: Settings, shared: StateStore, refs: dict[str, Reference]) -> None:
    a, b = replica(settings, shared, "a"), replica(settings, shared, "b")
    try:
        await a.load("alice", "tiny", max_batch_size=8)
        assert _holder(shared, "alice") == ("a", 1)
        before = await a.predict("alice", rows_body(refs["tiny"]))
        # "a" dies (it simply stops answering); the ingress now sends alice to "b"
        request = asyncio.ensure_future(b.predict("alice", rows_body(refs["tiny"])))
        while b.placement.get("alice") is None:
            await asyncio.sleep(0)
        assert b.placement.get("alice").life.phase is Phase.LOADING and not request.done()  # held, not refused
        after = await request
        _same(after, before)
        assert_rows_match(after, refs["tiny"])
        assert _holder(shared, "alice") == ("b", 2)
        assert shared.assignment("alice").max_batch_size == 8  # what the client asked for moved with it
        assert (await b.client("alice")).model == "tiny"
    finally:
        await _close(a, b)


async def test_concurrent_requests_share_one_takeover(
        replica: Callable[..., Registry], settings: Settings, shared: StateStore, refs: dict[str, Reference]) -> None:
    a, b = replica(settings, shared, "a"), replica(settings, shared, "b")
    try:
        await a.load("alice", "tiny")
        loads = []
        original = b._load
        b._load = lambda wanted, how=None: loads.append(how) or original(wanted, how)
        answers = await asyncio.gather(*(b.predict("alice", rows_body(refs["tiny"])) for _ in range(12)))
        for answer in answers:
            _same(answer, answers[0])
        assert _holder(shared, "alice") == ("b", 2) and loads == ["takeover"]  # taken over once, loaded once
        assert len(b.placement) == 1
    finally:
        await _close(a, b)


async def test_the_stale_holder_drops_its_copy_and_takes_the_client_back_when_asked(
        replica: Callable[..., Registry], settings: Settings, shared: StateStore, refs: dict[str, Reference]) -> None:
    a, b = replica(settings, shared, "a"), replica(settings, shared, "b")
    try:
        await a.load("alice", "tiny")
        await a.load("bob", "tiny2")
        await b.predict("alice", rows_body(refs["tiny"]))  # b takes alice over
        assert await a.check_ownership() == 1  # a finds its token stale and drops alice, keeps bob
        assert a.placement.get("alice") is None and a.placement.get("bob") is not None
        assert _holder(shared, "alice") == ("b", 2)  # dropping a stale copy writes nothing
        assert await a.check_ownership() == 0
        # the ingress sends alice back to "a": it takes her over again, and "b" drops its copy
        assert_rows_match(await a.predict("alice", rows_body(refs["tiny"])), refs["tiny"])
        assert _holder(shared, "alice") == ("a", 3)
        assert await b.check_ownership() == 1 and len(b.placement) == 0
    finally:
        await _close(a, b)


async def test_a_load_on_another_replica_moves_the_client_and_an_unload_anywhere_forgets_it(
        replica: Callable[..., Registry], settings: Settings, shared: StateStore) -> None:
    a, b = replica(settings, shared, "a"), replica(settings, shared, "b")
    try:
        await a.load("alice", "tiny")
        await b.load("alice", "tiny2")  # the client's own request: "b" holds it now, whoever held it
        assert _holder(shared, "alice") == ("b", 2) and shared.assignment("alice").model == "tiny2"
        assert await a.check_ownership() == 1
        await a.load("carol", "tiny")
        result = await b.unload("carol")  # held by "a": forgotten in the store; "a" drops it at its check
        assert result.model == "tiny" and shared.assignment("carol") is None
        assert await a.check_ownership() == 1 and len(a.placement) == 0
        with pytest.raises(ClientNotFound):
            await b.unload("carol")
    finally:
        await _close(a, b)


async def test_restore_puts_back_only_this_replicas_clients(
        replica: Callable[..., Registry], settings: Settings, shared: StateStore, refs: dict[str, Reference]) -> None:
    a, b = replica(settings, shared, "a"), replica(settings, shared, "b")
    try:
        await a.load("alice", "tiny")
        await a.load("bob", "tiny2")
        await b.predict("alice", rows_body(refs["tiny"]))  # alice moved to "b" while "a" was away
    finally:
        await _close(a)
    restarted = replica(settings, shared, "a")
    try:
        await restarted.restore()
        assert restarted.placement.clients() == ["bob"]
        assert _holder(shared, "alice") == ("b", 2) and _holder(shared, "bob") == ("a", 2)
        assert await b.check_ownership() == 0  # "b" still holds alice
    finally:
        await _close(restarted, b)


async def test_a_full_replica_first_drops_stale_copies_then_refuses_with_no_free_slot(
        replica: Callable[..., Registry], settings: Settings, shared: StateStore, refs: dict[str, Reference]) -> None:
    a, b = replica(settings, shared, "a", slots=1), replica(settings, shared, "b")
    try:
        await a.load("alice", "tiny")
        await b.predict("alice", rows_body(refs["tiny"]))  # "a" has not checked yet: its one slot holds a stale copy
        await a.load("bob", "tiny2")  # the claim finds no free slot, checks ownership, drops alice, claims
        assert a.placement.clients() == ["bob"]
        await b.load("carol", "tiny")
        with pytest.raises(NoFreeSlot):
            await a.predict("carol", rows_body(refs["tiny"]))  # held elsewhere, and "a" is full: 503 no_free_slot
        assert _holder(shared, "carol") == ("b", 1)  # a refused takeover changes nothing
    finally:
        await _close(a, b)


async def test_a_takeover_that_cannot_load_gives_the_client_back_to_its_holder(
        replica: Callable[..., Registry], settings: Settings, shared: StateStore, tmp_path: Path,
        refs: dict[str, Reference]) -> None:
    (tmp_path / "empty").mkdir()
    lacking = settings.model_copy(update={"model_dir": tmp_path / "empty"})  # a replica whose store lacks the model
    a, b = replica(settings, shared, "a"), replica(lacking, shared, "b")
    try:
        await a.load("alice", "tiny")
        with pytest.raises(ModelNotFound):  # the load's own error is the request's answer
            await b.predict("alice", rows_body(refs["tiny"]))
        assert _holder(shared, "alice") == ("a", 1) and shared.assignment("alice").failed is None
        assert len(b.placement) == 0
        assert await a.check_ownership() == 0  # a routing blip never loses a client: "a" still holds and serves it
        assert_rows_match(await a.predict("alice", rows_body(refs["tiny"])), refs["tiny"])
    finally:
        await _close(a, b)


async def test_a_failed_restore_is_reported_by_every_replica(
        replica: Callable[..., Registry], settings: Settings, shared: StateStore, tmp_path: Path,
        refs: dict[str, Reference]) -> None:
    a = replica(settings, shared, "a")
    await a.load("alice", "tiny")
    await _close(a)
    (tmp_path / "empty").mkdir()
    restarted = replica(settings.model_copy(update={"model_dir": tmp_path / "empty"}), shared, "a")
    c = replica(settings, shared, "c")
    try:
        await restarted.restore()  # its model is gone from "a"'s store: remembered as failed, with the reason
        stored = shared.assignment("alice")
        assert stored.failed and (stored.replica, stored.epoch) == ("a", 2)
        with pytest.raises(ClientNotFound) as raised:
            await c.predict("alice", rows_body(refs["tiny"]))  # reported, not retried, on another replica too
        assert "could not be put back" in raised.value.message and raised.value.details["reason"] == stored.failed
        assert len(c.placement) == 0
    finally:
        await _close(restarted, c)


@pytest.mark.parametrize("ticks", [0, 1, 2, 3, 5, 8, 13])
async def test_a_cancelled_request_does_not_stop_its_takeover(
        replica: Callable[..., Registry], settings: Settings, shared: StateStore, refs: dict[str, Reference],
        ticks: int) -> None:
    a, b = replica(settings, shared, "a"), replica(settings, shared, "b")
    try:
        await a.load("alice", "tiny")
        request = asyncio.ensure_future(b.predict("alice", rows_body(refs["tiny"])))
        for _ in range(ticks):
            await asyncio.sleep(0)
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
        await b.operations.idle()
        slot = b.placement.get("alice")
        if slot is None:  # cancelled before the takeover began: nothing changed
            assert _holder(shared, "alice") == ("a", 1)
        else:
            assert slot.life.phase is Phase.READY and _holder(shared, "alice") == ("b", 2)
        assert_rows_match(await b.predict("alice", rows_body(refs["tiny"])), refs["tiny"])
        assert _holder(shared, "alice") == ("b", 2)
    finally:
        await _close(a, b)


async def test_a_failed_restore_is_no_longer_reported_once_another_replica_loads_the_client(
        replica: Callable[..., Registry], settings: Settings, shared: StateStore, tmp_path: Path) -> None:
    a = replica(settings, shared, "a")
    await a.load("alice", "tiny")
    await _close(a)
    (tmp_path / "empty").mkdir()
    restarted = replica(settings.model_copy(update={"model_dir": tmp_path / "empty"}), shared, "a")
    b = replica(settings, shared, "b")
    try:
        await restarted.restore()
        assert (await restarted.client("alice")).state == "failed"
        await b.load("alice", "tiny2")  # the client's own load, on another replica
        await restarted.check_ownership()  # not "failed" here any more: "b" serves it
        with pytest.raises(ModelNotFound):
            await restarted.client("alice")  # so asking here takes it over, which cannot load here: given back
        assert _holder(shared, "alice") == ("b", 3) and (await b.client("alice")).model == "tiny2"
    finally:
        await _close(restarted, b)


async def test_asking_for_a_client_held_elsewhere_takes_it_over(
        replica: Callable[..., Registry], settings: Settings, shared: StateStore) -> None:
    a, b = replica(settings, shared, "a"), replica(settings, shared, "b")
    try:
        await a.load("alice", "tiny", max_delay_us=250)
        record = await b.client("alice")  # GET /v1/clients/alice, routed to "b": it answers once the model serves
        assert (record.model, record.state, record.batching.max_delay_us) == ("tiny", "ready", 250)
        assert _holder(shared, "alice") == ("b", 2)
    finally:
        await _close(a, b)

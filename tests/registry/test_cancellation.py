"""Cancelling a load, swap or unload at every step of it leaves a legal, truthful state.

The test steps through each operation: it counts every time the operation's task suspends (every await that waits:
a thread doing TensorFlow work, a state-file write, a drain), and for k = 1, 2, ... cancels the caller at the k-th
suspension, until the operation finishes in fewer than k. After each run it waits for the registry to be idle and
checks what a client could observe: every slot settled (``empty`` or ``ready``) with the lifecycle's invariants, the
client -> slot map matching the slots, the state file remembering exactly what the slots hold, the operation
finished (a cancelled caller stops waiting; it does not interrupt the operation), and a new client's first load into
a free slot reporting no previous model (a slot is never handed on while it holds one).
"""

import asyncio
import types
from collections.abc import Awaitable, Callable

import pytest

from app.errors import SlotServeError
from app.registry import Registry
from app.registry.lifecycle import SETTLED
from tests.conftest import Server

pytestmark = pytest.mark.anyio


@types.coroutine
def _stepped(operation: Awaitable, k: int, at_step: Callable[[], None]):
    """Drive ``operation`` as its task would, calling ``at_step`` when it suspends for the k-th time."""
    inner = operation.__await__()
    steps, sending, throwing = 0, None, None
    while True:
        try:
            yielded = inner.throw(throwing) if throwing is not None else inner.send(sending)
        except StopIteration as stop:
            return stop.value
        steps += 1
        if steps == k:
            at_step()
        try:
            sending, throwing = (yield yielded), None
        except BaseException as exc:  # noqa: BLE001 - handed on to the operation, as its task would
            sending, throwing = None, exc


async def _clear(registry: Registry) -> None:
    for slot in registry.slots:
        if slot.client is not None:
            await registry.unload(slot.client)


def _assert_legal_and_truthful(registry: Registry) -> None:
    holding = {}
    for slot in registry.slots:
        life = slot.life
        assert life.phase in SETTLED, (slot.index, life.phase)
        life._check()  # the lifecycle's invariants
        if life.client is not None:
            assert registry.placement.get(life.client) is slot
            holding[life.client] = life.serving.name
    assert len(registry.placement) == len(holding)
    remembered = {a.client: a.model for a in registry.memory.state.assignments() if a.failed is None}
    assert remembered == holding


# (name, the setup: client -> model, the operation, the model "c" must end with (None: no slot))
SCENARIOS = {
    "first load": ({}, lambda r: r.load("c", "tiny"), "tiny"),
    "side_by_side swap": ({"c": "four_mb"}, lambda r: r.load("c", "six_mb"), "six_mb"),
    "replace swap": ({"c": "nine_mb"}, lambda r: r.load("c", "nine_mb_b"), "nine_mb_b"),
    "failed replace, rolled back": ({"c": "nine_mb"}, lambda r: r.load("c", "lying"), "nine_mb"),
    "unload": ({"c": "four_mb", "other": "tiny"}, lambda r: r.unload("c"), None),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_cancelling_the_caller_at_every_step(server: Server, scenario: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    registry = server.registry
    setup, operation, final = SCENARIOS[scenario]
    run = registry.operations.run
    steps_seen = 0
    for k in range(1, 200):
        await _clear(registry)
        for client, model in setup.items():
            await registry.load(client, model)
        cancelled = False
        caller: asyncio.Future | None = None

        def cancel_caller() -> None:
            nonlocal cancelled
            cancelled = True
            assert caller is not None
            caller.cancel()

        monkeypatch.setattr(registry.operations, "run",
                            lambda op, k=k, cb=cancel_caller: run(_stepped(op, k, cb)))
        caller = asyncio.ensure_future(operation(registry))
        try:
            await caller
        except (asyncio.CancelledError, SlotServeError):
            pass
        monkeypatch.setattr(registry.operations, "run", run)
        assert await registry.operations.idle(timeout_s=60)
        _assert_legal_and_truthful(registry)
        held = registry.loaded_model("c")
        assert (held[0] if held else None) == final, (k, held)  # the operation finished all the same
        free = next((s for s in registry.slots if s.client is None), None)
        if free is not None:
            first = await registry.load("next", "tiny")
            assert first.previous_model is None and first.strategy == "load"
            await registry.unload("next")
        if not cancelled:
            break
        steps_seen = k
    assert steps_seen >= 3, steps_seen  # the operation did suspend at several steps, and each was cancelled


async def test_close_with_work_in_flight_resolves_everything(settings, refs) -> None:  # noqa: ANN001
    """A shutdown while predictions are queued and a swap runs: every request gets an answer or an error; none is
    left pending, and the swap finishes first (``close`` waits for operations)."""
    from tests.conftest import open_server

    async with open_server(settings) as server:
        registry = server.registry
        await registry.load("c", "four_mb")
        await registry.load("d", "tiny", max_batch_size=4, max_delay_us=50_000)  # batches that wait for mates
        rows = {"c": refs["four_mb"].inputs["x"].tolist(), "d": refs["tiny"].inputs["x"][:1].tolist()}
        predictions = [asyncio.ensure_future(registry.predict(client, {"instances": rows[client]}))
                       for _ in range(10) for client in ("c", "d")]
        swap = asyncio.ensure_future(registry.load("c", "six_mb"))
        await asyncio.sleep(0)
        await registry.close(timeout_s=30)
        done, pending = await asyncio.wait([*predictions, swap], timeout=30)
        assert not pending
        assert swap.result().strategy == "side_by_side"
        for request in predictions:
            assert request.exception() is None or isinstance(request.exception(), SlotServeError)
        assert any(r.exception() is None for r in predictions)

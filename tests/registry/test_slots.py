"""TensorFlow work really happens on each slot's own device and threads; slots do not wait for each other."""

import asyncio
import threading

import numpy as np
import pytest

from app.registry import Registry
from tests.models import Reference

pytestmark = pytest.mark.anyio


@pytest.fixture
async def registry(settings) -> Registry:
    registry = Registry.from_settings(settings)
    yield registry
    await registry.close()


async def test_variables_and_outputs_live_on_the_slot_device(registry: Registry, refs: dict[str, Reference]) -> None:
    await registry.load("first", "tiny")  # takes slot 0, so the next client lands on another device
    result = await registry.load("placed", "pair")
    slot = registry.slots[result.record.slot]
    assert slot.index != 0 and slot.spec.device.endswith(f"CPU:{slot.index}")
    for variable in slot.model.variables:
        assert variable.device.endswith(slot.spec.device.removeprefix("/")), variable.device
    outputs = await slot.infer(slot.model.run, refs["pair"].inputs)
    for tensor in outputs.values():
        assert tensor.device.endswith(slot.spec.device.removeprefix("/")), tensor.device
    thread = await slot.infer(lambda: threading.current_thread().name)
    assert thread.startswith(f"slot{slot.index}-infer")


async def test_a_busy_slot_does_not_stall_other_slots(registry: Registry, refs: dict[str, Reference]) -> None:
    first = await registry.load("held", "tiny")
    held = registry.slots[first.record.slot]
    release = threading.Event()
    blocked = asyncio.ensure_future(held.work(release.wait))  # the held slot's lifecycle thread is now busy
    try:
        other = await asyncio.wait_for(registry.load("other", "tiny2"), timeout=60)
        assert other.record.slot != held.index
        body = {"instances": refs["tiny2"].inputs["x"].tolist()}
        got = await registry.predict("other", body)
        np.testing.assert_allclose(got["predictions"], refs["tiny2"].outputs["y"], atol=1e-5)
        # and the held slot's own predictions run on its separate inference thread
        got = await registry.predict("held", {"instances": refs["tiny"].inputs["x"].tolist()})
        np.testing.assert_allclose(got["predictions"], refs["tiny"].outputs["y"], atol=1e-5)
        assert not blocked.done()
    finally:
        release.set()
        await blocked


async def test_concurrent_loads_of_one_client_share_its_slot(registry: Registry) -> None:
    results = await asyncio.gather(registry.load("twice", "tiny"), registry.load("twice", "tiny2"))
    assert results[0].record.slot == results[1].record.slot
    first, second = sorted(results, key=lambda r: r.previous_model is not None)  # serialised by the slot lock
    assert first.previous_model is None and second.previous_model == first.record.model
    assert (await registry.client("twice")).model == second.record.model


async def test_parallel_first_loads_get_distinct_slots(registry: Registry) -> None:
    results = await asyncio.gather(*(registry.load(f"p{i}", "tiny") for i in range(4)))
    assert sorted(r.record.slot for r in results) == [0, 1, 2, 3]
    same = await asyncio.gather(registry.load("twice", "tiny"), registry.load("twice", "tiny2"),
                                return_exceptions=True)
    assert all(isinstance(r, Exception) and r.code == "no_free_slot" for r in same)

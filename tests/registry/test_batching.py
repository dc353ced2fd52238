"""The batch queue on its own: stacking, splitting, limits, failures. ``run`` here is plain numpy, no model."""

import asyncio

import numpy as np
import pytest

from app.errors import InvalidInput, SlotOutOfMemory, SlotServeError
from app.registry.batching import BatchPolicy, BatchQueue

pytestmark = pytest.mark.anyio


class Recorder:
    """A ``run`` that doubles its input, records batch sizes, and can be held until released."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        await self.release.wait()
        self.sizes.append(len(arrays["x"]))
        return {"y": arrays["x"] * 2}


def request(rows: int, start: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + rows, dtype=np.float32).reshape(rows, 1)}


async def test_requests_queued_while_a_batch_runs_form_the_next_batch() -> None:
    run = Recorder()
    queue = BatchQueue(run, BatchPolicy(max_batch_size=100, max_delay_us=0))
    run.release.clear()
    first = asyncio.ensure_future(queue.predict(request(1), 1))
    await asyncio.sleep(0)  # the worker takes the first request and waits in run()
    rest = [asyncio.ensure_future(queue.predict(request(rows, 10 * i), rows)) for i, rows in enumerate([1, 2, 3, 4])]
    await asyncio.sleep(0)
    run.release.set()
    outputs = await asyncio.gather(first, *rest)
    assert run.sizes == [1, 10]
    for (rows, start), out in zip([(1, 0), (1, 0), (2, 10), (3, 20), (4, 30)], outputs, strict=True):
        np.testing.assert_array_equal(out["y"], request(rows, start)["x"] * 2)
    assert queue.calls == 2 and queue.requests == 5


async def test_max_batch_size_bounds_every_call_except_one_oversized_request() -> None:
    run = Recorder()
    queue = BatchQueue(run, BatchPolicy(max_batch_size=4, max_delay_us=0))
    run.release.clear()
    futures = [asyncio.ensure_future(queue.predict(request(rows), rows)) for rows in [3, 3, 1, 6, 2]]
    await asyncio.sleep(0)
    run.release.set()
    await asyncio.gather(*futures)
    assert run.sizes == [4, 3, 6, 2]  # 3+1 (the oldest, then what fits) | 3 | 6 alone (never split) | 2


async def test_delay_waits_for_batchmates_until_the_batch_is_full() -> None:
    run = Recorder()
    queue = BatchQueue(run, BatchPolicy(max_batch_size=3, max_delay_us=1_000_000))
    futures = [asyncio.ensure_future(queue.predict(request(1), 1)) for _ in range(3)]
    await asyncio.wait_for(asyncio.gather(*futures), timeout=0.9)  # full before the 1 s delay ran out
    assert run.sizes == [3]


async def test_a_failed_batch_fails_every_request_with_its_error_and_nothing_hangs() -> None:
    async def broken(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise SlotServeError("boom.")

    queue = BatchQueue(broken, BatchPolicy(max_batch_size=10, max_delay_us=1000))
    results = await asyncio.gather(*(queue.predict(request(2), 2) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, SlotServeError) and r.message == "boom." for r in results)
    await asyncio.wait_for(queue.drain(), timeout=5)


async def test_wrong_output_length_fails_each_request_and_nothing_hangs() -> None:
    async def short(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": arrays["x"][:-1]}

    queue = BatchQueue(short, BatchPolicy(max_batch_size=10, max_delay_us=1000))
    results = await asyncio.gather(queue.predict(request(2), 2), queue.predict(request(1), 1), return_exceptions=True)
    assert all(isinstance(r, SlotServeError) and r.code == "model_invalid" for r in results)
    await asyncio.wait_for(queue.drain(), timeout=5)


async def test_a_request_bad_in_value_fails_alone() -> None:
    async def picky(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if (arrays["x"] < 0).any():
            raise InvalidInput("negative.")  # what the servable raises for TensorFlow's InvalidArgumentError
        return {"y": arrays["x"] * 2}

    queue = BatchQueue(picky, BatchPolicy(max_batch_size=10, max_delay_us=20_000))
    bad = {"x": -np.ones((1, 1), np.float32)}
    results = await asyncio.gather(queue.predict(request(2), 2), queue.predict(bad, 1), queue.predict(request(1), 1),
                                   return_exceptions=True)
    np.testing.assert_array_equal(results[0]["y"], request(2)["x"] * 2)
    assert isinstance(results[1], SlotServeError) and results[1].message == "negative."
    np.testing.assert_array_equal(results[2]["y"], request(1)["x"] * 2)


@pytest.mark.parametrize("failure", [SlotOutOfMemory("out of memory."), SlotServeError("internal."),
                                     RuntimeError("a bug")])
async def test_a_batch_no_request_caused_fails_once(failure: Exception) -> None:
    calls = []

    async def failing(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(arrays["x"]))
        raise failure

    queue = BatchQueue(failing, BatchPolicy(max_batch_size=10, max_delay_us=20_000))
    results = await asyncio.gather(*(queue.predict(request(n), n) for n in (1, 2, 3)), return_exceptions=True)
    assert all(r is failure for r in results)
    assert calls == [6]  # one run of the whole batch: an OOM is not retried request by request (N+1 runs)


async def test_close_resolves_the_batch_in_flight_and_the_queued_ones() -> None:
    run = Recorder()
    queue = BatchQueue(run, BatchPolicy(max_batch_size=2, max_delay_us=0))
    run.release.clear()  # the first batch blocks inside run
    in_flight = [asyncio.ensure_future(queue.predict(request(1), 1)) for _ in range(2)]
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(queue.predict(request(1), 1)) for _ in range(3)]
    await asyncio.sleep(0)
    queue.close()
    results = await asyncio.wait_for(asyncio.gather(*in_flight, *queued, return_exceptions=True), timeout=5)
    assert all(isinstance(r, SlotServeError) and r.code == "slot_busy" for r in results)


async def test_rows_of_different_shapes_are_never_stacked() -> None:
    run = Recorder()
    queue = BatchQueue(run, BatchPolicy(max_batch_size=10, max_delay_us=20_000))
    wide = {"x": np.ones((1, 3), np.float32)}
    results = await asyncio.gather(queue.predict(request(1), 1), queue.predict(wide, 1), queue.predict(request(2), 2))
    assert sorted(run.sizes) == [1, 3]  # the two (rows, 1) requests together, the (rows, 3) one alone
    np.testing.assert_array_equal(results[1]["y"], wide["x"] * 2)


async def test_a_caller_that_went_away_is_skipped() -> None:
    run = Recorder()
    queue = BatchQueue(run, BatchPolicy(max_batch_size=10, max_delay_us=0))
    run.release.clear()
    blocker = asyncio.ensure_future(queue.predict(request(1), 1))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(queue.predict(request(5), 5))
    kept = asyncio.ensure_future(queue.predict(request(2), 2))
    await asyncio.sleep(0)
    gone.cancel()
    run.release.set()
    await asyncio.gather(blocker, kept)
    assert run.sizes == [1, 2]
    await queue.drain()


async def test_a_closed_queue_refuses_instead_of_hanging() -> None:
    queue = BatchQueue(Recorder(), BatchPolicy(max_batch_size=10, max_delay_us=0))
    await queue.predict(request(1), 1)
    queue.close()
    with pytest.raises(SlotServeError) as refused:
        await asyncio.wait_for(queue.predict(request(1), 1), timeout=5)
    assert refused.value.code == "slot_busy"

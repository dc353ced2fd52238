"""Dynamic batching: predictions for one loaded model that arrive close together become one call of its function.

One ``BatchQueue`` per loaded model, owned by its slot, so one slot's queue never delays another's and a batch never
mixes two models (a swap gives the new model a new queue and drains the old one). Requests are validated before they
join, and only requests whose rows have the same shape are stacked. A batch that the model rejects as input
(``InvalidInput``: an out-of-range index, say) is retried request by request, so only the culprit gets the error;
any other failure (out of memory, an internal error) can be no single request's fault and fails the batch once,
without running it N more times. Nothing hangs, whatever ``run`` raises, and ``close`` resolves every future.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from app.errors import InvalidInput, ModelInvalid, SlotBusy, SlotServeError

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class BatchPolicy:
    """``max_batch_size`` rows per call at most; wait up to ``max_delay_us`` for batchmates (0: never wait)."""

    max_batch_size: int
    max_delay_us: int


@dataclass
class _Request:
    arrays: Arrays
    rows: int
    future: asyncio.Future
    shape: tuple  # each input's row shape: only requests with equal shapes can be stacked


class BatchQueue:
    """Stacks queued requests (up to ``max_batch_size`` rows) into one ``run`` call, then splits the outputs.

    While a batch runs, new requests queue up and form the next batch, so under load batches grow on their own even
    with no delay. The worker task is created lazily, inside the running event loop.
    """

    def __init__(self, run: Callable[[Arrays], Awaitable[Arrays]], policy: BatchPolicy,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.policy = policy
        self._run = run
        self._on_batch = on_batch  # told each call's row count (the metrics' batch size)
        self._pending: deque[_Request] = deque()
        self._pending_rows = 0
        self._wakeup: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._closed = False
        self.calls = 0  # batches run
        self.requests = 0  # requests answered or failed through those batches

    async def predict(self, arrays: Arrays, rows: int) -> Arrays:
        """Queue one validated request of ``rows`` rows; its own slice of the batch's outputs."""
        if self._closed:
            raise SlotBusy("The model was unloaded before this prediction ran; try again.")
        if self._worker is None:
            self._start()
        future = asyncio.get_running_loop().create_future()
        shape = tuple(a.shape[1:] for a in arrays.values())
        self._pending.append(_Request(arrays, rows, future, shape))
        self._pending_rows += rows
        self._idle.clear()
        self._wakeup.set()
        if self._pending_rows >= self.policy.max_batch_size:
            self._full.set()
        return await future

    async def drain(self) -> None:
        """Return once every request queued so far has been answered."""
        if self._idle is not None:
            await self._idle.wait()

    def close(self) -> None:
        """Stop the worker; fail anything still queued (callers drain first)."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
        self._fail(list(self._pending), SlotBusy("The model was unloaded before this prediction ran; try again."))
        self._pending.clear()

    def _start(self) -> None:
        self._wakeup, self._full, self._idle = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                if self.policy.max_delay_us and self._pending_rows < self.policy.max_batch_size:
                    try:
                        await asyncio.wait_for(self._full.wait(), self.policy.max_delay_us / 1e6)
                    except TimeoutError:
                        pass
                batch = self._take()
                try:
                    await self._dispatch(batch)
                except asyncio.CancelledError:  # closed while this batch ran: its callers get an answer too
                    self._fail(batch, SlotBusy("The model was unloaded before this prediction ran; try again."))
                    raise
                except Exception as exc:  # noqa: BLE001 - the worker must outlive any failure
                    self._fail(batch, exc)
            self._idle.set()

    def _take(self) -> list[_Request]:
        """The oldest request and, in order, every queued request of the same row shape that still fits."""
        first = self._pending.popleft()
        batch, rows, kept = [first], first.rows, deque()
        while self._pending:
            request = self._pending.popleft()
            if request.shape == first.shape and rows + request.rows <= self.policy.max_batch_size:
                batch.append(request)
                rows += request.rows
            else:
                kept.append(request)
        self._pending = kept
        self._pending_rows -= rows
        if self._pending_rows < self.policy.max_batch_size:
            self._full.clear()
        return batch

    async def _dispatch(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]  # a caller that went away is not computed for
        if not live:
            return
        self.calls += 1
        self.requests += len(live)
        if self._on_batch is not None:
            self._on_batch(sum(r.rows for r in live))
        try:
            if len(live) == 1:
                outputs = await self._run(live[0].arrays)
            else:
                names = live[0].arrays.keys()
                outputs = await self._run({n: np.concatenate([r.arrays[n] for r in live]) for n in names})
        except Exception as exc:  # noqa: BLE001 - answered below
            failure: BaseException = exc
        else:
            failure = _split(outputs, live)
            if failure is None:
                return
        if len(live) == 1 or not isinstance(failure, InvalidInput):
            self._fail(live, failure)  # one request's error, or one no request caused: the batch fails once
            return
        del failure
        for request in live:  # the model rejected the batch's input: each request on its own, so only the culprit
            await self._dispatch([request])

    @staticmethod
    def _fail(requests: list[_Request], exc: BaseException) -> None:
        for request in requests:
            if not request.future.done():
                request.future.set_exception(exc)


def _split(outputs: Arrays, batch: list[_Request]) -> SlotServeError | None:
    """Give each request its rows of ``outputs``; an error (and no answers) when the row counts do not add up."""
    total = sum(r.rows for r in batch)
    wrong = {name: out.shape[:1] for name, out in outputs.items() if out.shape[:1] != (total,)}
    if wrong:
        return ModelInvalid(f"The model returned {wrong} rows for a batch of {total}.")
    offset = 0
    for request in batch:
        end = offset + request.rows
        if not request.future.done():
            request.future.set_result({name: out[offset:end] for name, out in outputs.items()})
        offset = end
    return None

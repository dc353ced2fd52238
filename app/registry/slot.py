"""One slot: a logical device, the client holding it, its model, its lock and its threads."""

import asyncio
import enum
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import tensorflow as tf

from app.partitions import SlotMeter, SlotSpec, TensorLedger, TrackedGroup
from app.registry.servable import Servable
from app.registry.store import ModelFile

T = TypeVar("T")


class SlotState(str, enum.Enum):
    EMPTY = "empty"
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"


@dataclass(frozen=True)
class Memory:
    """A slot's memory figures in bytes."""

    limit_bytes: int
    in_use_bytes: int
    peak_bytes: int


class Slot:
    """A slot and everything that belongs to it alone.

    Two threads per slot, each entering ``tf.device`` for every job: one runs predictions in arrival order (so a
    no-op job queued behind them is a drain barrier), the other loads and frees models, so a side-by-side swap loads
    the new model while the old one keeps answering. ``lock`` serialises lifecycle operations of this slot only.
    """

    def __init__(self, spec: SlotSpec) -> None:
        self.spec = spec
        self.ledger = TensorLedger()
        self.meter = SlotMeter(spec, self.ledger)
        self.state = SlotState.EMPTY
        self.client: str | None = None
        self.model: Servable | None = None
        self.group: TrackedGroup | None = None  # weak references to the current model's variables
        self.model_file: ModelFile | None = None
        self.baseline_bytes = self.meter.in_use()  # the empty slot's figure; unloads must return to it
        self.residue_bytes = 0  # cumulative, every unload and swap
        self.lock = asyncio.Lock()
        # Set while predictions may proceed; cleared while a replace-swap or unload has the slot to itself.
        self.open = asyncio.Event()
        self.open.set()
        self._infer = ThreadPoolExecutor(1, thread_name_prefix=f"slot{spec.index}-infer")
        self._work = ThreadPoolExecutor(1, thread_name_prefix=f"slot{spec.index}-work")

    @property
    def index(self) -> int:
        return self.spec.index

    async def infer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on this slot's inference thread."""
        return await asyncio.get_running_loop().run_in_executor(self._infer, self._on_device, fn, args)

    async def work(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` (a load, a release, a memory reading) on this slot's lifecycle thread."""
        return await asyncio.get_running_loop().run_in_executor(self._work, self._on_device, fn, args)

    async def drain(self) -> None:
        """Return once every prediction submitted before this call has finished."""
        await self.infer(_nothing)

    def memory(self) -> Memory:
        """Current figures; on a GPU this reads the slot's allocator, so call it off the event loop."""
        return Memory(self.spec.limit_bytes, self.meter.in_use(), self.meter.peak())

    def close(self) -> None:
        self.model = None
        self._infer.shutdown(wait=True, cancel_futures=True)
        self._work.shutdown(wait=True, cancel_futures=True)

    def _on_device(self, fn: Callable[..., T], args: tuple) -> T:
        with tf.device(self.spec.device):
            return fn(*args)


def _nothing() -> None:
    return None

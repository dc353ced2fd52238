"""One slot: a logical device, the client holding it, its model, its lock, its threads, and freeing in place."""

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import tensorflow as tf

from app.errors import InvalidInput, ModelTooLarge
from app.partitions import SlotMeter, SlotSpec, TensorLedger, TrackedGroup, collect_garbage
from app.registry.batching import Arrays, BatchPolicy, BatchQueue
from app.registry.decoding import lower_priority
from app.registry.events import RegistryEvents
from app.registry.footprint import Footprint
from app.registry.lifecycle import Phase, SlotLifecycle
from app.registry.servable import Servable, load_servable
from app.registry.signatures import unservable
from app.registry.store import ModelFile
from app.registry.tensors import TensorInfo

T = TypeVar("T")
LOAD_NICE = 5
log = logging.getLogger("slotserve.registry")


@dataclass(frozen=True)
class Memory:
    """A slot's memory figures in bytes."""

    limit_bytes: int
    in_use_bytes: int
    peak_bytes: int


@dataclass(frozen=True)
class ModelView:
    """What the protocols may know about a loaded model: its name, store format and tensors.

    ``inputs`` and ``outputs`` are its default signature's; ``signatures`` has every signature's by name (the default,
    ``default_signature``, first): a Keras model has one, a SavedModel what it was exported with. ``version`` is the
    served version of a versioned SavedModel, else ``None``.
    """

    name: str
    format: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    signatures: dict[str, tuple[list[TensorInfo], list[TensorInfo]]] = field(default_factory=dict)
    default_signature: str = "serving_default"
    version: int | None = None

    def signature(self, name: str | None) -> "ModelView":
        """This view with signature ``name``'s inputs and outputs (the default one for ``None``).

        ``InvalidInput`` naming the model's signatures when it has no signature ``name``.
        """
        if name is None or name == self.default_signature:
            return self
        if name not in self.signatures:
            raise InvalidInput(f"Model '{self.name}' has no signature '{name}'; its signatures are "
                               f"{sorted(self.signatures) or [self.default_signature]}.", model=self.name)
        inputs, outputs = self.signatures[name]
        reason = unservable(inputs, outputs)
        if reason:
            raise InvalidInput(f"Signature '{name}' of model '{self.name}' {reason}.", model=self.name)
        return replace(self, inputs=inputs, outputs=outputs)


@dataclass(eq=False)
class Loaded:
    """A model in a slot with everything that belongs to it: its weights' weak references and its batch queue."""

    servable: Servable
    group: TrackedGroup
    file: ModelFile
    footprint: Footprint
    queue: BatchQueue

    @property
    def name(self) -> str:
        return self.servable.name

    @property
    def view(self) -> ModelView:
        servable = self.servable
        return ModelView(self.name, self.file.format, servable.inputs, servable.outputs, servable.signature_tensors,
                         servable.default_signature, self.file.version)


class Slot:
    """A slot and everything that belongs to it alone.

    Two threads per slot, each entering ``tf.device`` for every job: one runs predictions in arrival order (so a
    no-op job queued behind them is a drain barrier), the other loads and frees models, so a side-by-side swap loads
    the new model while the old one keeps answering. ``lock`` serialises lifecycle operations of this slot only.
    Its phase, client and serving model belong to ``life`` (``lifecycle.SlotLifecycle``): read them there or
    through the properties below; only lifecycle events change them.
    """

    def __init__(self, spec: SlotSpec, events: RegistryEvents | None = None) -> None:
        self.spec = spec
        self.events = events or RegistryEvents()  # the registry's: its batch queues report each call's rows
        self.ledger = TensorLedger()
        self.meter = SlotMeter(spec, self.ledger)
        self.life = SlotLifecycle()
        self.residue_bytes = 0  # cumulative, every unload and swap
        self.predictions_total = 0  # requests its models answered since its client claimed it (rates from deltas)
        self.baseline_bytes = self.meter.in_use()  # the empty slot's figure; unloads must return to it
        self.lock = asyncio.Lock()
        self._infer = ThreadPoolExecutor(1, thread_name_prefix=f"slot{spec.index}-infer")
        # loads yield the CPU to predictions: on a busy host a load takes longer, other slots' requests do not
        self._work = ThreadPoolExecutor(1, thread_name_prefix=f"slot{spec.index}-work",
                                        initializer=lower_priority(LOAD_NICE))

    @property
    def index(self) -> int:
        return self.spec.index

    @property
    def state(self) -> Phase:
        return self.life.phase

    @property
    def client(self) -> str | None:
        return self.life.client

    @property
    def loaded(self) -> "Loaded | None":
        return self.life.serving

    @property
    def model(self) -> Servable | None:
        return self.loaded.servable if self.loaded is not None else None

    async def infer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on this slot's inference thread."""
        return await asyncio.get_running_loop().run_in_executor(self._infer, self._on_device, fn, args)

    async def work(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` (a load, a release, a memory reading) on this slot's lifecycle thread."""
        return await asyncio.get_running_loop().run_in_executor(self._work, self._on_device, fn, args)

    async def load(self, model_file: ModelFile, needs: Footprint, budget: int, policy: BatchPolicy) -> Loaded:
        """Load ``model_file`` beside whatever the slot holds; ``ModelTooLarge`` if it takes more than ``budget``."""
        servable, group = await self.work(self._load_checked, model_file, needs, budget)
        return Loaded(servable, group, model_file, needs,
                      BatchQueue(lambda arrays: self.infer(servable, arrays), policy, self.events.batch_ran))

    async def predict(self, loaded: Loaded, arrays: Arrays, signature: str | None = None) -> Arrays:
        """Run ``loaded`` (a model of this slot) on one request's ``arrays`` and count it once it has answered.

        The default signature (``None``) goes through the model's batch queue. Another signature runs on its own,
        since the queue stacks calls of the default one only, still on the inference thread behind the queue's
        batches, so drains cover it too.
        """
        if signature is None:
            outputs = await loaded.queue.predict(arrays, len(next(iter(arrays.values()))))
        else:
            outputs = await self.infer(loaded.servable, arrays, signature)
        self.predictions_total += 1  # on the event loop: no lock needed
        return outputs

    async def drain(self, loaded: Loaded) -> None:
        """Return once every prediction already queued on ``loaded`` has finished."""
        await loaded.queue.drain()
        await self.infer(_nothing)

    async def retire(self, loaded: Loaded) -> tuple[int, int]:
        """Free a model no prediction can reach any more; return (bytes freed, bytes of residue)."""
        before = await self.work(self.meter.in_use)
        group = loaded.group
        loaded.queue.close()
        loaded.servable.close()
        del loaded
        after = await self.work(_collect_and_measure, self.meter, group)
        residue = group.live_bytes()
        if self.meter.uses_allocator and not self.life.open:
            # predictions are held, so the allocator holds the baseline plus the current model (rounded), if any
            held = self.loaded.group if self.loaded is not None else None
            residue = max(residue, self.meter.unexplained(after, self.baseline_bytes, held))
        if residue:
            log.warning("residue slot=%d bytes=%d after freeing a model", self.index, residue)
        self.residue_bytes += residue
        return max(before - after, 0), residue

    def memory(self) -> Memory:
        """Current figures; on a GPU this reads the slot's allocator, so call it off the event loop."""
        return Memory(self.spec.limit_bytes, self.meter.in_use(), self.meter.peak())

    def close(self) -> None:
        """Stop the threads and free the model's TensorFlow objects: the process is ending, so its lifecycle stays
        as it was (the caller closed the model's queue on the event loop)."""
        if self.loaded is not None:
            self.loaded.servable.close()
        self._infer.shutdown(wait=True, cancel_futures=True)
        self._work.shutdown(wait=True, cancel_futures=True)

    def _load_checked(self, model_file: ModelFile, needs: Footprint, budget: int) -> tuple[Servable, TrackedGroup]:
        """On the lifecycle thread: load, then check the real figure (its variables, and the graph constants its
        file declared, held as long as the loaded graph lives) against what the slot has left."""
        # the file may be a little larger than the weights it holds; a file far larger is not a real model
        servable = load_servable(model_file, self.spec.device, max_file_bytes=2 * budget + (1 << 20), budget=budget)
        group = self.ledger.track(servable.variables, servable.graph_owner, needs.constant_bytes)
        if group.nbytes <= budget:
            return servable, group
        servable.close()
        servable = None
        collect_garbage(group)
        self.residue_bytes += group.live_bytes()  # a refused load must leave nothing behind either
        raise ModelTooLarge(
            f"Model '{model_file.name}' holds {group.nbytes} bytes but the slot has {budget} bytes free.",
            model=model_file.name, needed_bytes=group.nbytes, limit_bytes=self.spec.limit_bytes)

    def _on_device(self, fn: Callable[..., T], args: tuple) -> T:
        with tf.device(self.spec.device):
            return fn(*args)


def _collect_and_measure(meter: SlotMeter, group: TrackedGroup) -> int:
    collect_garbage(group)
    return meter.in_use()


def _nothing() -> None:
    return None

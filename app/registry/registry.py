"""Clients -> slots, and every change of state: load, swap, unload, restore, predict.

All state changes go through this class, and every slot's phase through its lifecycle (``lifecycle.py``); the API
layers (native REST and the protocol facades) only translate. A load, swap or unload runs as a task of its own
(``operations.py``): a caller that goes away (a cancelled request, a client timeout) never interrupts it halfway, so the
slot always ends in a legal phase, and the assignment it records matches what the slot holds.
"""

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from app.errors import ClientNotFound, ModelNotLoaded, SlotBusy, SlotServeError
from app.names import check_client
from app.partitions import SlotSpec, plan_partitions
from app.registry import swaps
from app.registry.admission import admit
from app.registry.batching import Arrays, BatchPolicy
from app.registry.decoding import DecodePool, default_workers
from app.registry.events import RegistryEvents
from app.registry.operations import Operations
from app.registry.ownership import Ownership, Superseded
from app.registry.pins import Pins
from app.registry.placement import Placement
from app.registry.records import ClientRecord, LoadResult, SlotRecord, UnloadResult, client_record, log_change
from app.registry.remembering import Remembering
from app.registry.slot import ModelView, Slot
from app.registry.store import ModelFile, ModelStore
from app.registry.tensors import format_response, is_large, parse_request
from app.settings import Settings
from app.state import Assignment, StateStore

log = logging.getLogger("slotserve.registry")


class Registry(Ownership):
    """Owns the slots, the client -> slot map (``placement.py``) and the operations on them."""

    def __init__(self, settings: Settings, specs: Sequence[SlotSpec], state: StateStore | None = None) -> None:
        self.settings = settings
        self.store = ModelStore(settings.model_dir)
        self.events = RegistryEvents()  # loads and batches, told to a listener (the app's metrics)
        self.slots = [Slot(spec, self.events) for spec in specs]
        self.default_policy = BatchPolicy(settings.max_batch_size, settings.max_delay_us)
        self.decoding = DecodePool(default_workers())
        self.pins = Pins()
        self.memory = Remembering(state, settings.replica_id)  # assignments, and clients whose restore failed
        self.placement = Placement(self.slots)  # clients -> slots
        self.operations = Operations()  # loads, swaps and unloads in progress
        self._taking: dict[str, asyncio.Future] = {}  # takeovers starting (ownership.py), by client
        self._restored = False  # restore() has run (ownership.py)
        self.claimed = False  # restore() has claimed the slots of the clients it puts back (ownership.py)

    @classmethod
    def from_settings(cls, settings: Settings, state: StateStore | None = None) -> "Registry":
        """Plan the partitions (once per process) and build a registry over them."""
        specs = plan_partitions(settings.slots, settings.slot_memory_mb, settings.device, settings.gpu_headroom_mb)
        registry = cls(settings, specs, state)
        # Every unload runs gc.collect(). With TensorFlow and Keras imported, a full collection walks ~1M start-up
        # objects (~85 ms); freezing the live ones first makes it walk only what models created since (<1 ms).
        gc.collect()
        gc.freeze()
        return registry

    # ---- queries -------------------------------------------------------------------------------------------

    async def models(self) -> list[ModelFile]:
        """The store's models (listed off the event loop, cached until the store changes)."""
        return await asyncio.to_thread(self.store.list)

    async def client(self, client: str) -> ClientRecord:
        """The client's record: its slot's, or a failed restore's (state ``failed``, with the reason)."""
        check_client(client)
        slot = self.placement.get(client)
        if slot is None:
            try:
                return self.memory.failed_record(client)
            except ClientNotFound:
                slot = await self._held_slot(client)  # stored, held elsewhere (or nowhere): it comes here
        memory = await asyncio.to_thread(slot.memory)
        if slot.client != client:  # unloaded (and maybe claimed by another client) while memory was read
            return self.memory.failed_record(client)
        return client_record(slot, client, memory)

    async def slot_records(self) -> list[SlotRecord]:
        memories = await asyncio.to_thread(lambda: [slot.memory() for slot in self.slots])
        return [SlotRecord(s.index, s.spec.device, s.spec.kind, s.state.value, s.client,
                           s.model.name if s.model else s.life.incoming, m, s.residue_bytes, s.predictions_total)
                for s, m in zip(self.slots, memories, strict=True)]

    def loaded_model(self, client: str) -> tuple[str, str] | None:
        """(model, phase) for the client: the model serving (``ready``, or ``swapping`` while a new one loads
        beside it), else the one on its way in (``loading``, ``replacing``) or out (``unloading``); or None."""
        slot = self.placement.get(client)
        if slot is None:
            return None
        life = slot.life
        name = life.serving.name if life.serving is not None else life.incoming
        return (name, life.phase.value) if name is not None else None

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def load(self, client: str, model_name: str, max_batch_size: int | None = None,
                   max_delay_us: int | None = None, version: int | None = None) -> LoadResult:
        """Load ``model_name`` into ``client``'s slot (claiming a free slot on its first load), swapping in place.

        ``max_batch_size`` and ``max_delay_us`` override the server's batching settings for this model; ``version``
        picks a version of a versioned SavedModel (default: the highest). On failure the error's ``serving``
        detail names the model the client still has (``None`` when it has none). Success is recorded in the state
        before this returns.
        """
        check_client(client)
        wanted = Assignment(client, model_name, version, max_batch_size, max_delay_us)
        try:
            return await self.operations.run(self._load(wanted))
        except SlotServeError as exc:
            err = exc
        held = self.placement.get(client)
        err.details["serving"] = held.model.name if held is not None and held.model is not None else None
        raise err

    async def unload(self, client: str, model: str | None = None) -> UnloadResult:
        """Drain the client's predictions, free its model and give its slot back (and forget its assignment).

        With ``model``, only if that is the client's model (``ModelNotLoaded`` otherwise), checked under the lock.
        A client whose restore failed is forgotten.
        """
        check_client(client)
        return await self.operations.run(self._unload(client, model))

    async def predict(self, client: str, body: Any) -> dict[str, Any]:
        """The native route: ``{"instances"|"inputs": ...}`` in, ``{"predictions"|"outputs": ...}`` out."""
        decoded: dict[str, bool] = {}

        def decode(view: ModelView) -> Arrays:
            arrays, decoded["columnar"] = parse_request(body, view.inputs, self.settings.max_rows)
            return arrays

        view, outputs = await self.run(client, decode, offload=is_large(body))
        return format_response(outputs, view.outputs, decoded["columnar"])

    async def run(self, client: str, decode: Callable[[ModelView], Arrays], model: str | None = None,
                  offload: bool = False, signature: str | None = None) -> tuple[ModelView, Arrays]:
        """Run the client's model on the arrays ``decode`` builds from the request, once it knows the model.

        Every protocol goes through here: it waits out a first load, a replace swap or a swap to the model it
        names (bounded by ``busy_timeout_s``), checks that the client's model is ``model`` when one is named,
        validates before batching, and returns outputs by name. During a side_by_side swap the old model answers.
        ``offload`` runs ``decode`` on the decode pool (large requests must not stall other clients).
        ``signature`` names another signature of a SavedModel (``InvalidInput`` if it has none by that name); the
        view ``decode`` gets and the one returned describe that signature's tensors.
        """
        for _ in range(3):  # a decode offloaded to a thread can race a swap: then decode again for the new model
            slot, loaded = await self._serving(client, model)  # read after the last await: the drain covers it
            view = loaded.view.signature(signature)
            if not offload:
                arrays = decode(view)
            else:
                arrays = await self.decoding.run(decode, view)
                if slot.loaded is not loaded or not slot.life.open:
                    continue  # swapped or unloading meanwhile: its drain may not have covered this request
            other = signature if signature is not None and signature != view.default_signature else None
            return view, await slot.predict(loaded, arrays, other)  # counted in the slot's predictions_total
        raise SlotBusy(f"Client '{client}' is swapping models; try again shortly.", client=client)

    async def view(self, client: str, model: str | None = None) -> ModelView:
        """What a protocol may say about the client's model, waiting as ``run`` does (``ModelNotLoaded`` if the
        model it serves is not ``model``)."""
        return (await self._serving(client, model))[1].view

    async def close(self, timeout_s: float | None = None) -> None:
        """Free every model and stop every slot thread, waiting at most ``timeout_s`` for operations in progress
        (a load inside TensorFlow cannot be interrupted: it is left to the process's exit). Assignments stay: a
        shutdown is not an unload."""
        await self.operations.idle(timeout_s)
        for slot in self.slots:
            if slot.loaded is not None:
                slot.loaded.queue.close()
        closing = [asyncio.ensure_future(asyncio.to_thread(slot.close)) for slot in self.slots]
        _, pending = await asyncio.wait(closing, timeout=timeout_s)
        if pending:
            log.warning("%d slot(s) still busy (a load in progress) after %ss; not waiting for them",
                        len(pending), timeout_s)
        self.placement.clear()
        self.decoding.close()
        self.pins.close()
        gc.collect()

    # ---- operations (each runs as its own task: see operations.py) --------------------------------------------------

    async def _load(self, wanted: Assignment, putting_back: str | None = None) -> LoadResult:
        """Load ``wanted`` for its client: the client's own request, or (``putting_back``: ``restore`` at start-up,
        ``takeover`` from another replica) an assignment the store says this replica holds."""
        started = time.perf_counter()
        restoring = putting_back is not None
        client = wanted.client
        try:
            model_file = self.store.resolve(wanted.model, wanted.version)
            pinned = await asyncio.to_thread(self.pins.pin, model_file)
        except Exception as exc:
            await self._not_put_back(wanted, putting_back, exc)
            raise
        outcome = None
        try:
            needs = await asyncio.to_thread(admit, pinned, self.slots[0].spec.limit_bytes,
                                            self.settings.admission_margin, self.settings.trust_savedmodel_ops)
            policy = BatchPolicy(wanted.max_batch_size or self.default_policy.max_batch_size,
                                 self.default_policy.max_delay_us if wanted.max_delay_us is None
                                 else wanted.max_delay_us)
            while True:
                # a put-back loads into the slot it claimed, or not at all (the client unloaded meanwhile)
                slot = self.placement.get(client) if restoring else await self._claim(client, wanted.model)
                if slot is None:
                    raise Superseded(f"Client '{client}' was unloaded while it was put back.", client=client)
                async with slot.lock:
                    if slot.client != client:  # unloaded while we waited for the lock: claim again
                        continue
                    if restoring and (slot.loaded is not None or self.memory.current(client) is not wanted):
                        raise Superseded(f"Client '{client}' loaded a model while it was put back.", client=client)
                    previous = slot.loaded.name if slot.loaded is not None else None
                    try:
                        if slot.loaded is None:
                            outcome = await swaps.first_load(slot, pinned, needs.footprint, policy)
                        else:
                            outcome = await swaps.swap(slot, pinned, needs.footprint, needs.estimate, policy)
                    finally:
                        if slot.client == client and slot.loaded is None:  # nothing serves: give the slot back
                            await self.placement.release(slot)
                    if not await self.memory.remember(wanted, held=restoring):  # durable before the caller hears
                        log.info("client %s moved to another replica while it was put back here", client)
                    break
        except BaseException as exc:
            if outcome is None:
                self.pins.unpin(pinned)
            elif outcome.previous is not None:  # it serves, but the store could not say so: keep its snapshot
                self.pins.unpin(outcome.previous)
            if isinstance(exc, swaps.ClientLost) and (lost := self.memory.current(client)) is not None:
                await self.memory.fail(lost, exc.message)  # it has nothing now: say so, and try again at restart
            elif isinstance(exc, Exception):
                await self._not_put_back(wanted, putting_back, exc)
            raise
        if outcome.previous is not None:
            self.pins.unpin(outcome.previous)
        memory = await asyncio.to_thread(slot.memory)
        log_change("swap" if previous else putting_back or "load", client, wanted.model, slot, started,
             memory, outcome.freed_bytes, outcome.residue_bytes, outcome.strategy, self.events)
        return LoadResult(client_record(slot, client, memory), (time.perf_counter() - started) * 1000, previous,
                          outcome.freed_bytes, outcome.residue_bytes, outcome.strategy)

    async def _unload(self, client: str, model: str | None, lost: Assignment | None = None) -> UnloadResult:
        """Unload the client's model; with ``lost`` (its token here, now stale), drop it without touching the
        store: another replica holds the client now."""
        started = time.perf_counter()
        slot = self.placement.get(client)
        if slot is None:
            if lost is not None:
                raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
            return await self.memory.forget_unheld(client)  # a failed restore, or held elsewhere: forget it
        async with slot.lock:
            loaded = slot.loaded
            stale = lost is not None and self.memory.current(client) is not lost  # re-taken since the check
            if slot.client != client or stale or (loaded is None and lost is not None):
                raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
            # nothing loaded under the lock: a put-back (ownership.py) has yet to start its load; it is called off
            name = loaded.name if loaded is not None else slot.life.incoming
            if model is not None and name != model:
                raise ModelNotLoaded(f"Client '{client}' has not loaded model '{model}' (it has '{name}').",
                                     client=client, model=model)
            del loaded
            if lost is None:
                await self.memory.forget(client)  # first: when the store is away, nothing has changed (503)
            outcome = await swaps.unload(slot) if slot.loaded is not None else None
            memory = await asyncio.to_thread(slot.memory)  # before another client can claim the slot
            await self.placement.release(slot)
            if lost is not None:
                self.memory.lost(client)
        freed, residue = (outcome.freed_bytes, outcome.residue_bytes) if outcome is not None else (0, 0)
        if outcome is not None:
            self.pins.unpin(outcome.previous)
        log_change("unload", client, name, slot, started, memory, freed, residue)
        return UnloadResult(client, name, slot.index, freed, residue, memory)

    # ---- predictions ---------------------------------------------------------------------------------------------

    async def _serving(self, client: str, model: str | None) -> tuple[Slot, Any]:
        """The client's slot (taken over when its assignment is held elsewhere: ``ownership.py``) and the model
        that should answer (see ``SlotLifecycle.serving_for``)."""
        check_client(client)
        for attempt in range(2):
            slot = await self._held_slot(client)
            try:
                return slot, await slot.life.serving_for(client, model, self.settings.busy_timeout_s)
            except ClientNotFound:
                if attempt or not self.memory.shared or self.placement.get(client) is not None:
                    raise self.memory.not_found(client) from None  # saying why, when putting it back failed
        raise AssertionError("unreachable")

"""Clients -> slots, and every change of state: load, swap, unload, predict.

All state changes go through this class; the API layers (native REST and the protocol facades) only translate.
"""

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from app.errors import (
    ClientNotFound, InvalidRequest, ModelNotLoaded, NoFreeSlot, SlotBusy, SlotServeError,
)
from app.partitions import SlotSpec, plan_partitions
from app.registry.batching import Arrays, BatchPolicy
from app.registry.decoding import DecodePool, default_workers
from app.names import is_valid_name
from app.registry.records import ClientRecord, LoadResult, SlotRecord, UnloadResult
from app.registry.slot import Memory, ModelView, Slot, SlotState
from app.registry.admission import Admission, admit
from app.registry.lean_json import NumericText
from app.registry.store import ModelFile, ModelStore
from app.registry.swaps import swap_in
from app.registry.tensors import format_response, parse_request
from app.settings import Settings

log = logging.getLogger("slotserve.registry")


class Registry:
    """Owns the slots and the client -> slot map. One lock per slot; a short global lock only to claim a slot."""

    def __init__(self, settings: Settings, specs: Sequence[SlotSpec]) -> None:
        self.settings = settings
        self.store = ModelStore(settings.model_dir)
        self.slots = [Slot(spec) for spec in specs]
        self.default_policy = BatchPolicy(settings.max_batch_size, settings.max_delay_us)
        self._clients: dict[str, Slot] = {}
        self._claim_lock = asyncio.Lock()
        self.decoding = DecodePool(default_workers())

    @classmethod
    def from_settings(cls, settings: Settings) -> "Registry":
        """Plan the partitions (once per process) and build a registry over them."""
        specs = plan_partitions(settings.slots, settings.slot_memory_mb, settings.device)
        registry = cls(settings, specs)
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
        slot = self._slot_of(client)
        memory = await asyncio.to_thread(slot.memory)
        if slot.client != client:  # unloaded (and maybe claimed by another client) while memory was read
            raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
        return _record(slot, client, memory)

    async def slot_records(self) -> list[SlotRecord]:
        memories = await asyncio.to_thread(lambda: [slot.memory() for slot in self.slots])
        return [
            SlotRecord(s.index, s.spec.device, s.spec.kind, s.state.value, s.client,
                       s.model.name if s.model else None, m, s.residue_bytes)
            for s, m in zip(self.slots, memories, strict=True)
        ]

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def load(self, client: str, model_name: str, max_batch_size: int | None = None,
                   max_delay_us: int | None = None, version: int | None = None) -> LoadResult:
        """Load ``model_name`` into ``client``'s slot (claiming a free slot on its first load), swapping in place.

        ``max_batch_size`` and ``max_delay_us`` override the server's batching settings for this model; ``version``
        picks a version of a versioned SavedModel (default: the highest). On failure the error's ``serving``
        detail names the model the client still has (``None`` when it has none).
        """
        _check_client(client)
        default = self.default_policy
        policy = BatchPolicy(max_batch_size or default.max_batch_size,
                             default.max_delay_us if max_delay_us is None else max_delay_us)
        try:
            model_file = self.store.resolve(model_name, version)
            needs = await asyncio.to_thread(self._admit, model_file)
            while True:
                slot = await self._claim(client)
                try:
                    async with slot.lock:
                        if slot.client == client:  # else it was unloaded while we waited: claim again
                            return await self._load_locked(slot, client, model_file, needs, policy)
                finally:  # also on cancellation: a slot claimed for a load that never happened goes back
                    if slot.loaded is None and slot.client == client and not slot.lock.locked():
                        await self._release(slot, client)
        except SlotServeError as exc:
            err = exc
        held = self._clients.get(client)
        err.details["serving"] = held.model.name if held is not None and held.model is not None else None
        raise err

    async def unload(self, client: str, model: str | None = None) -> UnloadResult:
        """Drain the client's predictions, free its model and give its slot back.

        With ``model``, only if that is the client's model (``ModelNotLoaded`` otherwise), checked under the lock.
        """
        slot = self._slot_of(client)
        started = time.perf_counter()
        async with slot.lock:
            loaded = slot.loaded
            if slot.client != client or loaded is None:
                raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
            if model is not None and loaded.name != model:
                raise ModelNotLoaded(f"Client '{client}' has not loaded model '{model}' (it has '{loaded.name}').",
                                     client=client, model=model)
            slot.state = SlotState.UNLOADING
            slot.open.clear()
            try:
                await slot.drain(loaded)
                name, slot.loaded = loaded.name, None
                freed, residue = await slot.retire(loaded)
                memory = await asyncio.to_thread(slot.memory)  # before another client can claim the slot
            finally:
                del loaded
                await self._release(slot, client)
        _log("unload", client, name, slot, started, memory, freed, residue)
        return UnloadResult(client, name, slot.index, freed, residue, memory)

    async def predict(self, client: str, body: Any) -> dict[str, Any]:
        """The native route: ``{"instances"|"inputs": ...}`` in, ``{"predictions"|"outputs": ...}`` out."""
        decoded: dict[str, bool] = {}

        def decode(view: ModelView) -> Arrays:
            arrays, decoded["columnar"] = parse_request(body, view.inputs, self.settings.max_rows)
            return arrays

        view, outputs = await self.run(client, decode, offload=_is_large(body))
        return format_response(outputs, view.outputs, decoded["columnar"])

    async def run(self, client: str, decode: Callable[[ModelView], Arrays], model: str | None = None,
                  offload: bool = False, signature: str | None = None) -> tuple[ModelView, Arrays]:
        """Run the client's model on the arrays ``decode`` builds from the request, once it knows the model.

        Every protocol goes through here: it waits out a swap (bounded by ``busy_timeout_s``), checks that the
        client's model is ``model`` when one is named, validates before batching, and returns outputs by name.
        ``offload`` runs ``decode`` in a worker thread (large requests must not stall other clients).
        ``signature`` names another signature of a SavedModel (``InvalidInput`` if it has none by that name); the
        view ``decode`` gets and the one returned describe that signature's tensors.
        """
        for _ in range(3):  # a decode offloaded to a thread can race a swap: then decode again for the new model
            slot = self._slot_of(client)
            if not slot.open.is_set():
                try:
                    await asyncio.wait_for(slot.open.wait(), self.settings.busy_timeout_s)
                except TimeoutError:
                    raise SlotBusy(f"Client '{client}' is swapping models; try again shortly.",
                                   client=client) from None
            loaded = slot.loaded  # read after the last await: the drain then covers this prediction
            if slot.client != client or loaded is None:
                raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
            if model is not None and loaded.name != model:
                raise ModelNotLoaded(f"Client '{client}' has not loaded model '{model}' (it has '{loaded.name}').",
                                     client=client, model=model)
            view = loaded.view.signature(signature)
            if not offload:
                arrays = decode(view)
            else:
                arrays = await self.decoding.run(decode, view)
                if slot.loaded is not loaded or not slot.open.is_set():
                    continue  # swapped or unloading meanwhile: its drain may not have covered this request
            if signature is not None and signature != view.default_signature:
                # another signature: the batch queue stacks calls of the default one only, so this runs on its
                # own, still on the slot's inference thread (behind the queue's batches, so drains cover it too)
                return view, await slot.infer(loaded.servable, arrays, signature)
            return view, await loaded.queue.predict(arrays, len(next(iter(arrays.values()))))
        raise SlotBusy(f"Client '{client}' is swapping models; try again shortly.", client=client)

    def view(self, client: str, model: str | None = None) -> ModelView:
        """What a protocol may say about the client's loaded model (``ModelNotLoaded`` if it is not ``model``)."""
        slot = self._slot_of(client)
        loaded = slot.loaded
        if loaded is None or slot.state is not SlotState.READY:
            raise ClientNotFound(f"Client '{client}' has no model ready.", client=client)
        if model is not None and loaded.name != model:
            raise ModelNotLoaded(f"Client '{client}' has not loaded model '{model}' (it has '{loaded.name}').",
                                 client=client, model=model)
        return loaded.view

    def loaded_model(self, client: str) -> str | None:
        """The name of the model the client has ready, or None."""
        slot = self._clients.get(client)
        if slot is None or slot.loaded is None or slot.state is not SlotState.READY:
            return None
        return slot.loaded.name

    async def close(self, timeout_s: float | None = None) -> None:
        """Free every model and stop every slot thread, waiting at most ``timeout_s`` for them (a load inside
        TensorFlow cannot be interrupted: a slot still loading then is left to the process's exit)."""
        for slot in self.slots:
            if slot.loaded is not None:
                slot.loaded.queue.close()
        closing = [asyncio.ensure_future(asyncio.to_thread(slot.close)) for slot in self.slots]
        _, pending = await asyncio.wait(closing, timeout=timeout_s)
        if pending:
            log.warning("%d slot(s) still busy (a load in progress) after %ss; not waiting for them",
                        len(pending), timeout_s)
        self._clients.clear()
        self.decoding.close()
        gc.collect()

    # ---- internals -----------------------------------------------------------------------------------------

    async def _load_locked(self, slot: Slot, client: str, model_file: ModelFile, needs: Admission,
                           policy: BatchPolicy) -> LoadResult:
        started = time.perf_counter()
        previous = slot.loaded.name if slot.loaded else None
        strategy, freed, residue = await swap_in(slot, model_file, needs.footprint, needs.estimate, policy)
        memory = await asyncio.to_thread(slot.memory)
        _log("swap" if previous else "load", client, model_file.name, slot, started, memory, freed, residue, strategy)
        load_ms = (time.perf_counter() - started) * 1000
        return LoadResult(_record(slot, client, memory), load_ms, previous, freed, residue, strategy)

    async def _claim(self, client: str) -> Slot:
        async with self._claim_lock:
            slot = self._clients.get(client)
            if slot is not None:
                return slot
            for slot in self.slots:
                if slot.client is None:
                    slot.client = client
                    slot.state = SlotState.LOADING
                    slot.open.clear()  # its first predictions wait for this first load instead of failing
                    self._clients[client] = slot
                    return slot
        raise NoFreeSlot(f"All {len(self.slots)} slots are held by other clients; unload one first.")

    async def _release(self, slot: Slot, client: str) -> None:
        async with self._claim_lock:
            if self._clients.get(client) is slot:
                del self._clients[client]
            slot.client = None
            slot.state = SlotState.EMPTY
            slot.open.set()

    def _slot_of(self, client: str) -> Slot:
        _check_client(client)
        slot = self._clients.get(client)
        if slot is None:
            raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
        return slot

    def _admit(self, model_file: ModelFile) -> Admission:
        """``admit`` against this registry's slots and settings; reads files, so it runs off the event loop."""
        return admit(model_file, self.slots[0].spec.limit_bytes, self.settings.admission_margin,
                     self.settings.trust_savedmodel_ops)


def _is_large(body: Any, rows: int = 256) -> bool:
    """Cheap look at a request's first value: many rows or wide rows go to a worker thread for conversion."""
    if not isinstance(body, dict):
        return False
    value = body.get("instances", body.get("inputs"))
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
    if isinstance(value, NumericText) or (isinstance(value, list) and value and isinstance(value[0], dict)
                                          and any(isinstance(v, NumericText) for v in value[0].values())):
        return True
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    width = len(first) if isinstance(first, list | dict) else 1
    return len(value) * max(width, 1) > rows * 64


def _check_client(client: str) -> None:
    if not is_valid_name(client):
        raise InvalidRequest(f"'{client}' is not a valid client name: use letters, digits, '.', '_' and '-' only.")


def _record(slot: Slot, client: str, memory: Memory) -> ClientRecord:
    loaded = slot.loaded
    policy = loaded.queue.policy if loaded else None
    return ClientRecord(client, loaded.name if loaded else None, slot.index, slot.spec.device, slot.state.value,
                        memory, policy)


def _log(op: str, client: str, model: str, slot: Slot, started: float, memory: Memory, freed: int, residue: int,
         strategy: str = "none") -> None:
    log.info("%s client=%s model=%s slot=%d strategy=%s ms=%.1f in_use_bytes=%d freed_bytes=%d residue_bytes=%d",
             op, client, model, slot.index, strategy, (time.perf_counter() - started) * 1000, memory.in_use_bytes,
             freed, residue)

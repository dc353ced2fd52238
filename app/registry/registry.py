"""Clients -> slots, and every change of state: load, swap, unload, predict.

All state changes go through this class; the API layers (native REST and the protocol facades) only translate.
"""

import asyncio
import gc
import logging
import time
from collections.abc import Sequence
from typing import Any

from app.errors import ClientNotFound, InvalidRequest, ModelTooLarge, NoFreeSlot, SlotBusy, SlotServeError
from app.partitions import SlotSpec, plan_partitions
from app.registry.names import is_valid_name
from app.registry.records import ClientRecord, LoadResult, SlotRecord, UnloadResult
from app.registry.servable import Servable, load_servable
from app.registry.slot import Slot, SlotState
from app.registry.store import ModelFile, ModelStore, weight_bytes
from app.registry.tensors import format_response, parse_request
from app.settings import Settings

log = logging.getLogger("slotserve.registry")


class Registry:
    """Owns the slots and the client -> slot map. One lock per slot; a short global lock only to claim a slot."""

    def __init__(self, settings: Settings, specs: Sequence[SlotSpec]) -> None:
        self.settings = settings
        self.store = ModelStore(settings.model_dir)
        self.slots = [Slot(spec) for spec in specs]
        self._clients: dict[str, Slot] = {}
        self._claim_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> "Registry":
        """Plan the partitions (once per process) and build a registry over them."""
        specs = plan_partitions(settings.slots, settings.slot_memory_mb, settings.device)
        registry = cls(settings, specs)
        # Every unload runs gc.collect(). With TensorFlow and Keras imported, a full collection walks ~1M start-up
        # objects (~85 ms); freezing them first makes it walk only what models created since (<1 ms).
        gc.freeze()
        return registry

    # ---- queries -------------------------------------------------------------------------------------------

    def models(self) -> list[ModelFile]:
        return self.store.list()

    async def client(self, client: str) -> ClientRecord:
        slot = self._slot_of(client)
        memory = await asyncio.to_thread(slot.memory)
        return _record(slot, client, memory)

    async def slot_records(self) -> list[SlotRecord]:
        memories = await asyncio.to_thread(lambda: [slot.memory() for slot in self.slots])
        return [
            SlotRecord(s.index, s.spec.device, s.spec.kind, s.state.value, s.client,
                       s.model.name if s.model else None, m, s.residue_bytes)
            for s, m in zip(self.slots, memories)
        ]

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def load(self, client: str, model_name: str) -> LoadResult:
        """Load ``model_name`` into ``client``'s slot (claiming a free slot on its first load), swapping in place."""
        _check_client(client)
        try:
            model_file = self.store.resolve(model_name)
            estimate = await asyncio.to_thread(self._estimate, model_file)
            while True:
                slot = await self._claim(client)
                async with slot.lock:
                    if slot.client == client:  # else it was unloaded while we waited: claim again
                        try:
                            return await self._load_locked(slot, client, model_file, estimate)
                        finally:
                            if slot.model is None:
                                await self._release(slot, client)
        except SlotServeError as exc:
            err = exc
        # Every failed load says what the client still has (null when nothing): it is never left half-swapped.
        held = self._clients.get(client)
        err.details["serving"] = held.model.name if held is not None and held.model is not None else None
        raise err

    async def unload(self, client: str) -> UnloadResult:
        """Drain the client's predictions, free its model and give its slot back."""
        slot = self._slot_of(client)
        started = time.perf_counter()
        async with slot.lock:
            if slot.client != client or slot.model is None:
                raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
            slot.state = SlotState.UNLOADING
            slot.open.clear()
            try:
                await slot.drain()
                name = slot.model.name
                freed, residue = await self._retire(slot)
            finally:
                await self._release(slot, client)
        memory = await asyncio.to_thread(slot.memory)
        _log("unload", client, name, slot, (time.perf_counter() - started) * 1000, memory.in_use_bytes, freed, residue)
        return UnloadResult(client, name, slot.index, freed, residue, memory)

    async def predict(self, client: str, body: Any) -> dict[str, Any]:
        """Validate ``body`` against the client's model, run it on the slot's thread and shape the response."""
        slot = self._slot_of(client)
        if not slot.open.is_set():
            try:
                await asyncio.wait_for(slot.open.wait(), self.settings.busy_timeout_s)
            except TimeoutError:
                raise SlotBusy(f"Client '{client}' is swapping models; try again shortly.", client=client) from None
        model = slot.model  # read after the last await: the drain barrier then covers this prediction
        if slot.client != client or model is None:
            raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
        arrays, columnar = parse_request(body, model.inputs, self.settings.max_rows)
        outputs = await slot.infer(model, arrays)
        return format_response(outputs, model.outputs, columnar)

    async def close(self) -> None:
        """Free every model and stop every slot thread."""
        for slot in self.slots:
            if slot.model is not None:
                slot.model.close()
            await asyncio.to_thread(slot.close)
        self._clients.clear()
        gc.collect()

    # ---- internals -----------------------------------------------------------------------------------------

    async def _load_locked(self, slot: Slot, client: str, model_file: ModelFile, estimate: int) -> LoadResult:
        started = time.perf_counter()
        old = slot.model
        previous = old.name if old else None
        limit = slot.spec.limit_bytes
        if estimate > limit:
            raise ModelTooLarge(
                f"Model '{model_file.name}' needs about {estimate} bytes but the slot holds {limit} bytes.",
                model=model_file.name, needed_bytes=estimate, limit_bytes=limit)
        in_use = await slot.work(slot.meter.in_use)
        slot.state = SlotState.LOADING
        freed = residue = 0
        try:
            if old is None:
                strategy = "load"
                await slot.work(slot.meter.reset_peak)
                await self._load_into(slot, model_file, limit - in_use)
            elif in_use + estimate <= limit:
                strategy = "side_by_side"
                retired_group = slot.group
                new, group = await slot.work(self._load_new, slot, model_file, limit - in_use)
                slot.model, slot.group, slot.model_file = new, group, model_file  # the atomic switch
                del new
                await slot.drain()  # predictions already queued on the old model finish first
                freed, residue = await self._retire(slot, old, retired_group)
            else:
                strategy = "replace"
                freed, residue = await self._replace(slot, model_file)
        finally:
            old = None
            if slot.model is not None:
                slot.state = SlotState.READY
                slot.open.set()
        load_ms = (time.perf_counter() - started) * 1000
        memory = await asyncio.to_thread(slot.memory)
        _log("swap" if previous else "load", client, model_file.name, slot, load_ms, memory.in_use_bytes, freed, residue,
             strategy)
        return LoadResult(_record(slot, client, memory), load_ms, previous, freed, residue, strategy)

    async def _replace(self, slot: Slot, model_file: ModelFile) -> tuple[int, int]:
        """No room for both: hold new predictions, drain, free the old model, load the new one (or the old again)."""
        previous_file = slot.model_file
        slot.open.clear()
        try:
            await slot.drain()
            freed, residue = await self._retire(slot)
            try:
                await self._load_into(slot, model_file, slot.spec.limit_bytes)
                return freed, residue
            except SlotServeError as exc:
                err = exc
            try:
                await self._load_into(slot, previous_file, slot.spec.limit_bytes)
            except SlotServeError as exc:
                log.error("slot=%d could not restore model %s: %s", slot.index, previous_file.name, exc.message)
            raise err
        finally:
            slot.open.set()

    async def _load_into(self, slot: Slot, model_file: ModelFile, budget: int) -> None:
        slot.model, slot.group = await slot.work(self._load_new, slot, model_file, budget)
        slot.model_file = model_file

    @staticmethod
    def _load_new(slot: Slot, model_file: ModelFile, budget: int) -> tuple[Servable, Any]:
        """On the slot's lifecycle thread: load, then check the real figure against what the slot has left."""
        servable = load_servable(model_file, slot.spec.device)
        group = slot.ledger.track(servable.variables)
        if group.nbytes <= budget:
            return servable, group
        servable.close()
        servable = None
        gc.collect()
        raise ModelTooLarge(
            f"Model '{model_file.name}' holds {group.nbytes} bytes but the slot has {budget} bytes free.",
            model=model_file.name, needed_bytes=group.nbytes, limit_bytes=slot.spec.limit_bytes)

    async def _retire(self, slot: Slot, model: Servable | None = None, group: Any = None) -> tuple[int, int]:
        """Free ``model`` (default: the slot's current one); return (freed bytes, residue bytes)."""
        if model is None:
            model, group = slot.model, slot.group
            slot.model = slot.group = slot.model_file = None
        before = await slot.work(slot.meter.in_use)
        model.close()
        del model
        after = await slot.work(_collect_and_measure, slot)
        residue = group.live_bytes()
        if slot.meter.uses_allocator and not slot.open.is_set():
            # predictions are held, so the allocator holds exactly the baseline plus the current model, if any
            expected = slot.baseline_bytes + (slot.group.nbytes if slot.group is not None else 0)
            residue = max(residue, after - expected)
        if residue:
            log.warning("residue slot=%d bytes=%d after freeing a model", slot.index, residue)
        slot.residue_bytes += residue
        return max(before - after, 0), residue

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

    def _estimate(self, model_file: ModelFile) -> int:
        return int(weight_bytes(model_file) * (1 + self.settings.admission_margin))


def _collect_and_measure(slot: Slot) -> int:
    gc.collect()
    return slot.meter.in_use()


def _check_client(client: str) -> None:
    if not is_valid_name(client):
        raise InvalidRequest(f"'{client}' is not a valid client name: use letters, digits, '.', '_' and '-' only.")


def _record(slot: Slot, client: str, memory: Any) -> ClientRecord:
    model = slot.model.name if slot.model else None
    return ClientRecord(client, model, slot.index, slot.spec.device, slot.state.value, memory)


def _log(op: str, client: str, model: str, slot: Slot, ms: float, in_use: int, freed: int, residue: int,
         strategy: str = "none") -> None:
    log.info("%s client=%s model=%s slot=%d strategy=%s ms=%.1f in_use_bytes=%d freed_bytes=%d residue_bytes=%d",
             op, client, model, slot.index, strategy, ms, in_use, freed, residue)

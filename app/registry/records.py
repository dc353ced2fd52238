"""What the registry reports: plain immutable records, free of TensorFlow and of HTTP."""

import logging
import time
from dataclasses import dataclass

from app.registry.batching import BatchPolicy
from app.registry.events import RegistryEvents
from app.registry.slot import Memory, Slot

log = logging.getLogger("slotserve.registry")


@dataclass(frozen=True)
class ClientRecord:
    """A client's slot and model; a client whose restore failed has no slot, and ``reason`` says why."""

    client: str
    model: str | None
    slot: int | None
    device: str | None
    state: str
    memory: Memory | None
    batching: BatchPolicy | None
    reason: str | None = None


@dataclass(frozen=True)
class SlotRecord:
    slot: int
    device: str
    kind: str
    state: str
    client: str | None
    model: str | None
    memory: Memory
    residue_bytes: int
    predictions_total: int  # requests this slot's models answered since the server started (never decreases)


@dataclass(frozen=True)
class LoadResult:
    record: ClientRecord
    load_ms: float
    previous_model: str | None
    freed_bytes: int
    residue_bytes: int
    strategy: str  # "load" (slot was empty), "side_by_side" or "replace"


@dataclass(frozen=True)
class UnloadResult:
    client: str
    model: str
    slot: int | None  # None: a client whose restore had failed, now forgotten
    freed_bytes: int
    residue_bytes: int
    memory: Memory | None


def client_record(slot: Slot, client: str, memory: Memory) -> ClientRecord:
    """The record of ``client``, which holds ``slot``."""
    loaded = slot.loaded
    policy = loaded.queue.policy if loaded else None
    return ClientRecord(client, loaded.name if loaded else slot.life.incoming, slot.index, slot.spec.device,
                        slot.state.value, memory, policy)


def log_change(op: str, client: str, model: str, slot: Slot, started: float, memory: Memory, freed: int,
               residue: int, strategy: str = "none", events: RegistryEvents | None = None) -> None:
    """One line per load, swap, restore and unload; with ``events``, a load's time goes to its listener too (by
    strategy; a restore as ``restore``, a takeover from another replica as ``takeover``)."""
    seconds = time.perf_counter() - started
    log.info("%s client=%s model=%s slot=%d strategy=%s ms=%.1f in_use_bytes=%d freed_bytes=%d residue_bytes=%d",
             op, client, model, slot.index, strategy, seconds * 1000, memory.in_use_bytes, freed, residue)
    if events is not None:
        events.model_loaded(op if op in ("restore", "takeover") else strategy, seconds)

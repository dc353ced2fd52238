"""What the registry reports: plain immutable records, free of TensorFlow and of HTTP."""

from dataclasses import dataclass

from app.registry.batching import BatchPolicy
from app.registry.slot import Memory


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

"""The state store's interface and records, shared by every backend."""

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class KeyRecord:
    """One API key as stored: never the key itself, only its SHA-256 digest.

    ``id`` is a short public name for the key (shown by ``keys list``, used to revoke one key of several);
    times are seconds since the epoch.
    """

    id: str
    client: str
    admin: bool
    digest: str
    created_at: float
    last_used_at: float | None = None


@dataclass(frozen=True)
class Assignment:
    """A client's model, remembered so a restart puts it back: the model (and the SavedModel version the client
    asked for, if any), the batching overrides it asked for (``None``: the server's settings), whether the last
    restore failed and why, and when it was last recorded (seconds since the epoch)."""

    client: str
    model: str
    version: int | None = None
    max_batch_size: int | None = None
    max_delay_us: int | None = None
    failed: str | None = None
    updated_at: float = 0.0


class KeyConflict(Exception):
    """A new key's id (or digest) is already stored: make another."""


class StateStore(ABC):
    """Durable server state behind one small interface. Every method may be called from any thread."""

    #: where the state lives, for messages (a path; never a password)
    location: str

    @abstractmethod
    def add_key(self, record: KeyRecord) -> None:
        """Store a new key (its digest and who it belongs to); ``KeyConflict`` if its id is taken."""

    @abstractmethod
    def active_keys(self) -> list[KeyRecord]:
        """Every key that has not been revoked, oldest first."""

    @abstractmethod
    def revoke_keys(self, client: str, key_id: str | None = None) -> int:
        """Revoke the client's keys (only ``key_id`` when given); return how many were revoked."""

    @abstractmethod
    def record_key_use(self, used: Mapping[str, float]) -> None:
        """Write each key's last use (key id -> time); older times never overwrite newer ones."""

    @abstractmethod
    def record_assignment(self, assignment: Assignment) -> None:
        """Remember ``assignment`` (replacing the client's previous one), durably before returning."""

    @abstractmethod
    def forget_assignment(self, client: str) -> None:
        """Forget the client's assignment (after an unload), durably before returning."""

    @abstractmethod
    def assignments(self) -> list[Assignment]:
        """Every remembered assignment, oldest first."""

    @abstractmethod
    def clear_assignments(self) -> int:
        """Forget every assignment (keys stay); return how many there were."""

    @abstractmethod
    def change_marker(self) -> Hashable:
        """A value that differs from the last one returned once another process or connection changed the state.

        Cheap enough to call on every request: the key ring re-reads the keys only when it changes.
        """

    @abstractmethod
    def close(self) -> None:
        """Release every connection."""

"""The state store's interface and records, shared by every backend."""

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
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
    restore failed and why, and when it was last recorded (seconds since the epoch).

    ``replica`` and ``epoch`` say who holds it: the replica (its ``--replica-id``) and that replica's ownership
    epoch. The pair is the holder's token: every change of holder bumps the epoch, so a replica whose token no
    longer matches the stored one knows it lost the client (``""`` and 0: recorded before replicas existed).
    """

    client: str
    model: str
    version: int | None = None
    max_batch_size: int | None = None
    max_delay_us: int | None = None
    failed: str | None = None
    updated_at: float = 0.0
    replica: str = ""
    epoch: int = 0

    def held_by(self, other: "Assignment | None") -> bool:
        """Whether ``other`` (the stored row) still carries this assignment's holder token."""
        return other is not None and (other.replica, other.epoch) == (self.replica, self.epoch)


class KeyConflict(Exception):
    """A new key's id (or digest) is already stored: make another."""


class StateStore(ABC):
    """Durable server state behind one small interface. Every method may be called from any thread."""

    #: where the state lives, for messages (a path, or a URL without its password)
    location: str
    #: whether several servers share this state (PostgreSQL). A server restores at start-up only the assignments
    #: its own replica id holds in a shared store; a SQLite file belongs to one server, which restores them all.
    shared: bool = False

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
    def record_assignment(self, assignment: Assignment) -> Assignment:
        """Remember ``assignment`` (replacing the client's previous one) as held by ``assignment.replica``, durably
        before returning, whoever held it before; return it as stored.

        Its epoch stays the stored one when the stored row already carries ``assignment``'s holder token
        (``replica`` and ``epoch``), and is the stored epoch + 1 otherwise (1 for a client new to the store): the
        client moved to this replica, and its previous holder's token is stale from now on.
        """

    @abstractmethod
    def record_if_held(self, assignment: Assignment) -> bool:
        """Write ``assignment`` only if the stored row still carries its holder token (compare-and-set); return
        whether it was written. A restore's or a takeover's outcome, and a failure, are written this way: they
        must never overwrite what another replica recorded meanwhile."""

    @abstractmethod
    def take_over(self, seen: Assignment, replica: str) -> Assignment | None:
        """Make the client's assignment ``replica``'s, at ``seen.epoch`` + 1, if the stored row still carries
        ``seen``'s holder token (compare-and-set); return it as stored, or ``None`` when the row changed or is
        gone (another replica got there first)."""

    @abstractmethod
    def give_back(self, taken: Assignment, seen: Assignment) -> bool:
        """Undo a takeover that could not load: put back ``seen``'s holder token if the stored row still carries
        ``taken``'s (compare-and-set); return whether it did. ``seen``'s holder, if alive, keeps serving."""

    @abstractmethod
    def assignment(self, client: str) -> Assignment | None:
        """The client's stored assignment, or ``None``."""

    @abstractmethod
    def assignments_of(self, clients: Sequence[str]) -> list[Assignment]:
        """The stored assignments of ``clients`` (those that have one), in no particular order."""

    @abstractmethod
    def forget_assignment(self, client: str) -> None:
        """Forget the client's assignment (after an unload), whoever holds it, durably before returning."""

    @abstractmethod
    def assignments(self) -> list[Assignment]:
        """Every remembered assignment, oldest first."""

    @abstractmethod
    def clear_assignments(self, replica: str | None = None) -> int:
        """Forget every assignment (only those ``replica`` holds, when given; keys stay); return how many."""

    @abstractmethod
    def change_marker(self) -> Hashable:
        """A value that differs from the last one returned once another process or connection changed the state.

        Cheap enough to call on every request: the key ring re-reads the keys only when it changes.
        """

    @abstractmethod
    def close(self) -> None:
        """Release every connection."""

"""The registry's durable memory: every client's assignment (through the state store), and the clients whose
restore failed, with the reason (they hold no slot; ``GET /v1/clients/{client}`` shows them as ``failed``).

Only the registry calls this, from inside its operations, so what is remembered always matches what the slots hold
when the operation's caller hears of it. Without a state store (tests of the registry alone) nothing is durable.
"""

import asyncio
import time
from dataclasses import replace

from app.errors import ClientNotFound
from app.registry.records import ClientRecord, UnloadResult
from app.state import Assignment, StateStore

FAILED = "failed"


class Remembering:
    """Assignments, durable before the operation that changed them returns; and failed restores, in memory."""

    def __init__(self, state: StateStore | None) -> None:
        self.state = state
        self._current: dict[str, Assignment] = {}
        self._failed: dict[str, Assignment] = {}

    async def load(self) -> list[Assignment]:
        """Every remembered assignment, oldest first (all of them are tried again, failed ones included: their
        model may be back)."""
        if self.state is None:
            return []
        return await asyncio.to_thread(self.state.assignments)

    def current(self, client: str) -> Assignment | None:
        return self._current.get(client)

    async def remember(self, assignment: Assignment) -> None:
        """The client now has ``assignment``'s model."""
        assignment = replace(assignment, failed=None, updated_at=time.time())
        await self._write(self.state.record_assignment if self.state else None, assignment)
        self._current[assignment.client] = assignment
        self._failed.pop(assignment.client, None)

    async def forget(self, client: str) -> None:
        """The client unloaded: nothing to put back."""
        await self._write(self.state.forget_assignment if self.state else None, client)
        self._current.pop(client, None)
        self._failed.pop(client, None)

    async def fail(self, assignment: Assignment, reason: str) -> None:
        """The client's model could not be put back (at restore, or after a failed replace swap): remember why."""
        failed = replace(assignment, failed=reason, updated_at=time.time())
        await self._write(self.state.record_assignment if self.state else None, failed)
        self._current.pop(assignment.client, None)
        self._failed[assignment.client] = failed

    def failed_record(self, client: str) -> ClientRecord:
        """A failed client's record, or ``ClientNotFound``."""
        failed = self._failed.get(client)
        if failed is None:
            raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
        return ClientRecord(client, failed.model, None, None, FAILED, None, None, failed.failed)

    def not_found(self, client: str) -> ClientNotFound:
        """The error for a client without a slot, saying why when its restore failed."""
        failed = self._failed.get(client)
        if failed is None:
            return ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
        return ClientNotFound(f"Client '{client}' has no model loaded: its model '{failed.model}' could not be put "
                              f"back ({failed.failed.rstrip('.')}); load a model.", client=client,
                              reason=failed.failed)

    async def forget_failed(self, client: str) -> UnloadResult:
        """Unloading a failed client forgets it; any other client without a slot is ``ClientNotFound``."""
        failed = self._failed.get(client)
        if failed is None:
            raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
        await self.forget(client)
        return UnloadResult(client, failed.model, None, 0, 0, None)

    @staticmethod
    async def _write(write, value) -> None:  # noqa: ANN001 - a StateStore method, or None without a store
        if write is not None:
            await asyncio.to_thread(write, value)

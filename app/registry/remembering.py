"""The registry's durable memory: every client's assignment (through the state store) with this replica's holder
token for it, and the clients whose restore failed, with the reason (they hold no slot; ``GET /v1/clients/{client}``
shows them as ``failed``).

Only the registry calls this, from inside its operations, so what is remembered always matches what the slots hold
when the operation's caller hears of it. Without a state store (tests of the registry alone) nothing is durable.

Ownership, when several replicas share the store: an assignment's (replica, epoch) is its holder's token. A client's
own request (a load, a swap) makes this replica its holder whoever held it before (``remember``: the epoch moves on
when the holder changes). Putting a client back (a restore, or taking over a dead replica's client) first takes it
over by compare-and-set (``take_over``), and what it then writes (``remember(held=True)``, ``fail``) is written only
while the token is still this replica's: it never overwrites what another replica recorded meanwhile.
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

    def __init__(self, state: StateStore | None, replica: str = "") -> None:
        self.state = state
        self.replica = replica
        self._current: dict[str, Assignment] = {}  # clients this replica holds, with its token for each
        self._failed: dict[str, Assignment] = {}
        self._verified: dict[str, float] = {}  # when each held client's token was last found in the store
        self._previous: dict[str, Assignment] = {}  # the token each takeover replaced (for give_back)

    @property
    def shared(self) -> bool:
        return self.state is not None and self.state.shared

    def mine(self, assignment: Assignment) -> bool:
        """Whether a restore here puts ``assignment`` back: all of a store of one server's, only this replica's
        (or one recorded before replicas existed) of a shared one."""
        return not self.shared or assignment.replica in ("", self.replica)

    async def load(self) -> list[Assignment]:
        """Every remembered assignment, oldest first (failed ones included: their model may be back)."""
        if self.state is None:
            return []
        return await asyncio.to_thread(self.state.assignments)

    async def stored(self, *clients: str) -> dict[str, Assignment]:
        """The stored assignments of ``clients`` (those that have one), by client."""
        if self.state is None or not clients:
            return {}
        if len(clients) == 1:
            found = await asyncio.to_thread(self.state.assignment, clients[0])
            return {clients[0]: found} if found is not None else {}
        return {a.client: a for a in await asyncio.to_thread(self.state.assignments_of, list(clients))}

    def current(self, client: str) -> Assignment | None:
        return self._current.get(client)

    async def take_over(self, seen: Assignment) -> Assignment | None:
        """Make ``seen``'s client this replica's, if the store still says what ``seen`` says (else ``None``)."""
        taken = replace(seen, replica=self.replica, epoch=seen.epoch + 1)
        if self.state is not None:
            taken = await asyncio.to_thread(self.state.take_over, seen, self.replica)
            if taken is None:
                return None
        self._current[seen.client] = taken
        self._previous[seen.client] = seen
        self._failed.pop(seen.client, None)
        self._verified[seen.client] = time.monotonic()
        return taken

    async def give_back(self, taken: Assignment) -> None:
        """A takeover that could not load: the client goes back to the holder ``take_over`` found (if the store
        still says it is this replica's at ``taken``'s epoch), so a copy still serving there is not dropped."""
        seen = self._previous.pop(taken.client, None)
        if self.state is not None and seen is not None:
            await asyncio.to_thread(self.state.give_back, taken, seen)
        self.lost(taken.client)

    async def remember(self, assignment: Assignment, held: bool = False) -> bool:
        """The client now has ``assignment``'s model, here. A client's own load makes this replica its holder;
        with ``held`` (a restore, a takeover) it is written only while this replica still holds the token it
        took. Whether it was written."""
        token = self._current.get(assignment.client)
        assignment = replace(assignment, failed=None, updated_at=time.time(), replica=self.replica,
                             epoch=token.epoch if token is not None else 0)
        if self.state is not None:
            if held:
                if not await asyncio.to_thread(self.state.record_if_held, assignment):
                    return False  # taken over meanwhile: the ownership check drops the stale copy
            else:
                try:
                    assignment = await asyncio.to_thread(self.state.record_assignment, assignment)
                except BaseException:
                    # the model serves here, unrecorded: with no token of its own, a token that matches nothing
                    # lets the next ownership check drop it unless the store says this replica holds the client
                    self._current.setdefault(assignment.client, replace(assignment, epoch=-1))
                    raise
        self._current[assignment.client] = assignment
        self._failed.pop(assignment.client, None)
        self._verified[assignment.client] = time.monotonic()
        return True

    async def forget(self, client: str) -> None:
        """The client unloaded: nothing to put back, on any replica."""
        if self.state is not None:
            await asyncio.to_thread(self.state.forget_assignment, client)
        self.lost(client)

    def lost(self, client: str) -> None:
        """This replica no longer holds the client (another does, or nobody): forget it here only."""
        self._current.pop(client, None)
        self._previous.pop(client, None)
        self._failed.pop(client, None)
        self._verified.pop(client, None)

    async def fail(self, assignment: Assignment, reason: str) -> None:
        """The client's model could not be put back (at restore, or after a failed replace swap): remember why,
        in the store only while ``assignment``'s token is still the stored one."""
        failed = replace(assignment, failed=reason, updated_at=time.time())
        if self.state is not None and not await asyncio.to_thread(self.state.record_if_held, failed):
            self.lost(assignment.client)
            return
        self._current.pop(assignment.client, None)
        self._verified.pop(assignment.client, None)
        self._failed[assignment.client] = failed

    def verified(self, client: str) -> None:
        self._verified[client] = time.monotonic()

    def check_due(self, client: str, every_s: float) -> bool:
        """Whether the client's token has not been found in the store for ``every_s`` (a shared store only)."""
        return self.shared and time.monotonic() - self._verified.get(client, 0.0) > every_s

    def failed_clients(self) -> list[str]:
        return list(self._failed)

    def forget_stale_failures(self, clients: list[str], stored: dict[str, Assignment]) -> None:
        """Of ``clients``' failed restores, those the store (``stored``: their rows) no longer records as this
        replica's (the client was loaded, or unloaded, on another replica since) are no longer this one's to report."""
        for client in clients:
            failed, row = self._failed.get(client), stored.get(client)
            if failed is not None and (row is None or row.failed is None or not failed.held_by(row)):
                del self._failed[client]

    def failed_record(self, client: str) -> ClientRecord:
        """A failed client's record, or ``ClientNotFound``."""
        failed = self._failed.get(client)
        if failed is None:
            raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
        return ClientRecord(client, failed.model, None, None, FAILED, None, None, failed.failed)

    def not_found(self, client: str, stored: Assignment | None = None) -> ClientNotFound:
        """The error for a client without a slot, saying why when its restore failed (here, or as ``stored``)."""
        failed = self._failed.get(client) or (stored if stored is not None and stored.failed else None)
        if failed is None:
            return ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
        return ClientNotFound(f"Client '{client}' has no model loaded: its model '{failed.model}' could not be put "
                              f"back ({failed.failed.rstrip('.')}); load a model.", client=client,
                              reason=failed.failed)

    async def forget_unheld(self, client: str) -> UnloadResult:
        """Unloading a client this replica holds no slot for: one whose restore failed, or one another replica
        holds (its assignment is forgotten; that replica drops the model at its next ownership check). Any other
        client is ``ClientNotFound``."""
        failed = self._failed.get(client) or (await self.stored(client)).get(client)
        if failed is None:
            raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
        await self.forget(client)
        return UnloadResult(client, failed.model, None, 0, 0, None)

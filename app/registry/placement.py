"""Which client holds which slot: the one owner of that map.

A client claims a free slot on its first load (the slot's lifecycle goes ``empty -> loading``) and releases it when
nothing serves in it any more (``-> empty``). Both happen under one short lock, so two clients never claim the
same slot.
"""

import asyncio
from collections.abc import Sequence

from app.errors import NoFreeSlot
from app.registry.slot import Slot


class Placement:
    """Clients -> slots."""

    def __init__(self, slots: Sequence[Slot]) -> None:
        self.slots = slots
        self._clients: dict[str, Slot] = {}
        self._lock = asyncio.Lock()

    def get(self, client: str) -> Slot | None:
        return self._clients.get(client)

    def __len__(self) -> int:
        return len(self._clients)

    async def claim(self, client: str, incoming: str) -> Slot:
        """The client's slot, or a free one claimed for its first model ``incoming`` (``NoFreeSlot`` if none)."""
        async with self._lock:
            return self._clients.get(client) or self._claim_free(client, incoming)

    async def claim_new(self, client: str, incoming: str) -> Slot | None:
        """A free slot claimed for ``client``'s first model ``incoming``, or ``None`` when it already holds one
        (``NoFreeSlot`` if none is free): the caller that gets a slot starts the load."""
        async with self._lock:
            return None if client in self._clients else self._claim_free(client, incoming)

    def _claim_free(self, client: str, incoming: str) -> Slot:
        for slot in self.slots:
            if slot.client is None:
                slot.life.claim(client, incoming)  # its first predictions wait for this load
                slot.predictions_total = 0  # counts this client's requests only (no earlier holder's)
                self._clients[client] = slot
                return slot
        raise NoFreeSlot(f"All {len(self.slots)} slots are held by other clients; unload one first.")

    async def release(self, slot: Slot) -> None:
        """The slot's client leaves it (the lifecycle refuses if a model is still loaded)."""
        async with self._lock:
            client = slot.life.release()
            if self._clients.get(client) is slot:
                del self._clients[client]

    def clients(self) -> list[str]:
        return list(self._clients)

    def clear(self) -> None:
        self._clients.clear()

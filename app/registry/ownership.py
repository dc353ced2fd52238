"""Which replica holds which client: putting clients back (a restore, a takeover) and dropping the ones another
replica took. Mixed into ``Registry``; every change still goes through the registry's operations.

The store's (replica, epoch) token on each assignment says who holds a client (see ``remembering.py``):
- A restore puts back only this replica's assignments (all of them from a store of one server's).
- A request for a client this replica holds no slot for, whose assignment is stored, takes it over: a slot is
  claimed (the request, and any other for the client, waits on it as for a first load), the store's token moves
  here by compare-and-set, and the model loads. That is what happens to the clients of a dead replica once the
  ingress sends them elsewhere. A takeover that cannot load gives the client back to the replica it came from (a
  routing blip must not lose a client), and a client's own load or unload meanwhile wins over a put-back.
- A replica whose token is stale (the client moved, or was unloaded elsewhere) drops its copy at the next ownership
  check: every ``ownership_check_s`` in the background, before a request for a client not checked for twice that
  long, and before a claim would find no free slot.
"""

import asyncio
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING

from app.errors import ClientNotFound, NoFreeSlot, SlotBusy, SlotServeError
from app.registry.slot import Slot
from app.state import Assignment

if TYPE_CHECKING:
    from app.registry.registry import Registry

log = logging.getLogger("slotserve.registry")
_TAKEOVER_TRIES = 2  # another replica taking the same client at the same moment: read the store again, once


class Superseded(SlotServeError):
    """A put-back that yields: the client loaded or unloaded a model of its own meanwhile, and that stands."""

    code = "superseded"
    status = HTTPStatus.CONFLICT  # never sent: whoever waits on a put-back ignores it


class Ownership:
    """Restore, takeover and ownership checks of ``Registry`` (which provides the attributes used here)."""

    async def restore(self: "Registry") -> None:
        """Put back every assignment this replica holds (at start-up): claim a slot for each, in the order they
        were recorded, then load them all at once (each slot loads on its own thread). A client whose model is gone
        or no longer fits is remembered as failed, with the reason; the others serve."""
        try:
            await self._restore()
        finally:
            self.claimed = self._restored = True

    async def _restore(self: "Registry") -> None:
        remembered = [a for a in await self.memory.load() if self.memory.mine(a)]
        loading = []
        for assignment in remembered:
            try:
                _, load = await self.operations.run(self._bring_back(assignment))
            except NoFreeSlot as exc:
                await self.memory.fail(assignment, exc.message)
                continue
            if load is not None:
                loading.append(load)
        self.claimed = True  # every client it puts back has its slot: their requests wait for their models
        for outcome in await asyncio.gather(*loading, return_exceptions=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, ClientNotFound | NoFreeSlot):
                log.debug("a restore failed: %s", outcome)
        log.info("restored %d of %d remembered clients", sum(1 for s in self.slots if s.loaded), len(remembered))

    async def check_ownership(self: "Registry", clients: list[str] | None = None) -> int:
        """Drop the models of clients (all held ones by default) whose stored token is no longer this replica's;
        return how many were dropped. Only with a shared store: a file of one server's has no other holder."""
        if not self.memory.shared:
            return 0
        names = self.placement.clients() if clients is None else clients
        tokens = {c: token for c in names if (token := self.memory.current(c)) is not None}
        failed = self.memory.failed_clients() if clients is None else []
        if not tokens and not failed:
            return 0
        stored = await self.memory.stored(*tokens, *failed)
        self.memory.forget_stale_failures(failed, stored)  # failed here, since loaded or forgotten elsewhere
        dropped = 0
        for client, token in tokens.items():
            holder = stored.get(client)
            if token.held_by(holder):
                self.memory.verified(client)
                continue
            if self.memory.current(client) is not token:
                continue  # it changed here while the store was read: the next check sees the new token
            slot = self.placement.get(client)
            if slot is None or slot.lock.locked():
                continue  # a load, swap or unload in progress: never wait for it here; the next check sees it
            log.info("client %s %s: dropping its model here", client, "was unloaded on another replica"
                     if holder is None else f"is held by replica {holder.replica} (epoch {holder.epoch})")
            try:
                await self.operations.run(self._unload(client, None, lost=token))
                dropped += 1
            except ClientNotFound:
                pass
        return dropped

    async def keep_ownership(self: "Registry") -> None:
        """Check ownership every ``ownership_check_s`` until cancelled (a store that is away is tried again)."""
        failing = False
        while True:
            await asyncio.sleep(self.settings.ownership_check_s)
            try:
                await self.check_ownership()
            except Exception as exc:  # noqa: BLE001 - the store may be away for a while: keep serving, keep trying
                if not isinstance(exc, SlotServeError):
                    log.exception("an ownership check failed")
                (log.debug if failing else log.warning)("could not check which clients this replica still holds "
                                                        "(%s); trying again every %gs", exc,
                                                        self.settings.ownership_check_s)
                failing = True
                continue
            if failing:
                log.warning("ownership checks work again")
                failing = False

    # ---- internals ---------------------------------------------------------------------------------------------

    async def _held_slot(self: "Registry", client: str) -> Slot:
        """The client's slot here: after an ownership check when one is due (skipped while the store is away: the
        background check decides then); taken over when it has none here but its assignment is stored
        (``ClientNotFound`` otherwise), once the model it puts back serves (its failure is the request's answer)."""
        slot = self.placement.get(client)
        if slot is not None and self.memory.check_due(client, 2 * self.settings.ownership_check_s):
            self.memory.verified(client)  # one check per period, however many requests arrive meanwhile
            try:
                await self.check_ownership([client])
            except Exception as exc:  # noqa: BLE001 - the store is away: keep serving the clients held here
                log.debug("ownership check of client %s skipped: %s", client, exc)
            slot = self.placement.get(client)
        if slot is not None:
            return slot
        slot, load = await self._take_over(client)
        if load is not None:
            done, _ = await asyncio.wait([load], timeout=self.settings.busy_timeout_s)
            if not done:
                raise SlotBusy(f"Client '{client}' is being taken over; try again shortly.", client=client)
            failure = None if load.cancelled() else load.exception()
            serving = slot.client == client and slot.loaded is not None  # e.g. loaded, but the store missed it
            if failure is not None and not isinstance(failure, Superseded) and not serving:
                raise failure
        return slot

    async def _take_over(self: "Registry", client: str) -> tuple[Slot, "asyncio.Future | None"]:
        """Start putting back a stored client this replica has no slot for: (its slot, whose lifecycle holds the
        client's requests until the model serves; the load, when one started). Concurrent requests for the client
        share one takeover, which runs as an operation: a cancelled request does not stop it."""
        if self._restored and not self.memory.shared:  # one server's store: nothing stored is held elsewhere
            raise self.memory.not_found(client)
        pending = self._taking.get(client)
        if pending is None:
            pending = self._taking[client] = self.operations.start(self._take_over_now(client))
            pending.add_done_callback(lambda _: self._taking.pop(client, None))
        try:
            return await asyncio.wait_for(asyncio.shield(pending), self.settings.busy_timeout_s)
        except TimeoutError:  # the store is slow to answer: the takeover goes on, the request does not wait
            raise SlotBusy(f"Client '{client}' is being taken over; try again shortly.", client=client) from None

    async def _take_over_now(self: "Registry", client: str) -> tuple[Slot, "asyncio.Future | None"]:
        for _ in range(_TAKEOVER_TRIES):
            stored = (await self.memory.stored(client)).get(client)
            if stored is None or stored.failed is not None:
                raise self.memory.not_found(client, stored)
            slot, load = await self._bring_back(stored)
            if slot is not None:
                if load is not None and stored.replica not in ("", self.memory.replica):
                    log.info("taking over client %s from replica %s (epoch %d)", client, stored.replica,
                             stored.epoch + 1)
                return slot, load
        raise SlotBusy(f"Client '{client}' is moving between replicas; try again shortly.", client=client)

    async def _bring_back(self: "Registry", seen: Assignment) -> tuple[Slot | None, "asyncio.Future | None"]:
        """Claim a slot for ``seen``'s client, take it over in the store (if the store still says what ``seen``
        says) and start loading its model: (the slot, the load). (Its slot, None) when it already has one here;
        (None, None) when another replica got there first. ``NoFreeSlot`` when no slot is free.

        The compare-and-set runs under the slot's lock: a client's own load or unload of it waits until the store
        says who holds it, and the load that follows yields to whatever the client did meanwhile (``Superseded``).
        """
        slot = await self._claim(seen.client, seen.model, new=True)
        if slot is None:
            return self.placement.get(seen.client), None
        async with slot.lock:
            taken = None
            try:
                taken = await self.memory.take_over(seen)
            finally:
                if taken is None and slot.client == seen.client and slot.loaded is None:
                    await self.placement.release(slot)
        if taken is None:
            return None, None
        how = "restore" if seen.replica in ("", self.memory.replica) else "takeover"
        return slot, self.operations.start(self._load(taken, how))

    async def _not_put_back(self: "Registry", wanted: Assignment, how: str | None, exc: BaseException) -> None:
        """A put-back that failed (a client's own failed load changes nothing). Its claimed slot goes back first,
        whatever the store does next. Then, only if nothing else settled the client meanwhile (its own load or
        unload, or this very put-back's model serving already, unrecorded: the next check reconciles that), a
        restore is remembered as failed, with the reason, and a takeover gives the client back to the replica that
        held it (its copy may still serve: a routing blip must not lose a client). Both are best-effort."""
        if how is None or isinstance(exc, Superseded):
            return
        client = wanted.client
        slot = self.placement.get(client)
        if slot is not None:
            async with slot.lock:
                if slot.client == client and slot.loaded is not None:
                    return  # it serves here (the client's own load, or this put-back's model, unrecorded)
                if slot.client == client:
                    await self.placement.release(slot)
        if self.memory.current(client) is not wanted:
            return  # the client's own load or unload came first
        try:
            if how == "takeover":
                await self.memory.give_back(wanted)
            else:
                await self.memory.fail(wanted, exc.message if isinstance(exc, SlotServeError) else str(exc))
        except Exception as failure:  # noqa: BLE001 - the store is away: a request here takes the client over again
            log.warning("client %s: could not record that its %s failed: %s", client, how, failure)
            self.memory.lost(client)

    async def _claim(self: "Registry", client: str, model: str, new: bool = False) -> Slot | None:
        """``Placement.claim`` (``claim_new`` when ``new``); when no slot is free, first drop the clients other
        replicas took over, then try once more."""
        claim = self.placement.claim_new if new else self.placement.claim
        try:
            return await claim(client, model)
        except NoFreeSlot:
            if not await self.check_ownership():
                raise
        return await claim(client, model)

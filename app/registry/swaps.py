"""Putting a model into a slot and taking it out: a first load, a swap in place by one of two strategies, an unload.

Every step goes through the slot's lifecycle (``lifecycle.py``), and the caller holds the slot's lock inside a task
no request can cancel (``Registry._operate``), so a step that has begun also ends in a legal phase.

``side_by_side`` when the slot has room for both models: load beside the old one, switch atomically, drain, free the
old one; the client's predictions never wait. ``replace`` when it has not: hold predictions, drain, free the old
model, load the new one, and on failure load the old one again from its pinned snapshot. Either way a failure
leaves the previous model serving; if even the old model cannot come back, the slot is released and the caller
told (``ClientLost``), never left holding a client without a model.
"""

import logging
from dataclasses import dataclass

from app.errors import ModelTooLarge, SlotServeError
from app.registry.batching import BatchPolicy
from app.registry.footprint import Footprint
from app.registry.slot import Slot
from app.registry.store import ModelFile

log = logging.getLogger("slotserve.registry")


@dataclass(frozen=True)
class Outcome:
    """What a load, swap or unload did: the strategy, the model that left the slot (and its file, to unpin), and
    the bytes freed and left behind."""

    strategy: str  # "load", "side_by_side", "replace" or "unload"
    previous: ModelFile | None = None
    freed_bytes: int = 0
    residue_bytes: int = 0


class ClientLost(SlotServeError):
    """A replace swap failed and the previous model could not be loaded again: the slot was released."""

    def __init__(self, cause: SlotServeError, previous: str) -> None:
        super().__init__(f"{cause.message.rstrip('.')}; and the previous model '{previous}' could not be loaded "
                         "again, so the client has no model now.", **cause.details)
        self.cause = cause
        self.code, self.status = cause.code, cause.status  # the load's own failure is what the client is told


async def first_load(slot: Slot, model_file: ModelFile, needs: Footprint, policy: BatchPolicy) -> Outcome:
    """Into a claimed (``loading``) slot. On failure the slot stays ``loading``: the caller releases it."""
    in_use = await slot.work(slot.meter.in_use)
    await slot.work(slot.meter.reset_peak)
    slot.life.serve(await slot.load(model_file, needs, slot.spec.limit_bytes - in_use, policy))
    return Outcome("load")


async def swap(slot: Slot, model_file: ModelFile, needs: Footprint, estimate: int, policy: BatchPolicy) -> Outcome:
    """Make ``model_file`` the model of a ``ready`` slot, in place."""
    limit = slot.spec.limit_bytes
    in_use = await slot.work(slot.meter.in_use)
    if in_use + estimate <= limit:
        slot.life.begin_side_by_side(model_file.name)
        try:
            new = await slot.load(model_file, needs, limit - in_use, policy)
        except ModelTooLarge as exc:
            slot.life.abort()
            if exc.details.get("needed_bytes", 0) > limit:
                raise  # its real size does not fit even an empty slot
            # bigger than its file said (or out of memory): it may fit on its own
        except BaseException:
            slot.life.abort()
            raise
        else:
            old = slot.life.switch(new)  # the atomic switch: new predictions go to the new model
            await slot.drain(old)  # predictions already queued on the old model finish on it
            freed, residue = await slot.retire(old)
            return Outcome("side_by_side", old.file, freed, residue)
    return await _replace(slot, model_file, needs, policy)


async def _replace(slot: Slot, model_file: ModelFile, needs: Footprint, policy: BatchPolicy) -> Outcome:
    """No room for both: hold new predictions, drain, free the old model, load the new one (or the old again)."""
    life = slot.life
    life.begin_replace(model_file.name)
    old = life.serving
    assert old is not None
    previous, previous_needs, previous_policy = old.file, old.footprint, old.queue.policy
    await slot.drain(old)
    freed, residue = await slot.retire(life.drop())
    del old
    try:
        life.serve(await slot.load(model_file, needs, slot.spec.limit_bytes, policy))
        return Outcome("replace", previous, freed, residue)
    except SlotServeError as exc:
        err = exc
    try:  # from the pinned snapshot: exactly the bytes that were serving
        life.serve(await slot.load(previous, previous_needs, slot.spec.limit_bytes, previous_policy))
    except SlotServeError as exc:
        log.error("slot=%d could not restore model %s: %s", slot.index, previous.name, exc.message)
        raise ClientLost(err, previous.name) from None
    raise err


async def unload(slot: Slot) -> Outcome:
    """Drain and free the model of a ``ready`` slot; it is left ``unloading`` without a model, for the caller to
    release."""
    life = slot.life
    life.begin_unload()
    loaded = life.serving
    assert loaded is not None
    file = loaded.file
    await slot.drain(loaded)
    del loaded
    freed, residue = await slot.retire(life.drop())
    return Outcome("unload", file, freed, residue)

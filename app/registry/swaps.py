"""Putting a model into a slot: a first load, or a swap in place by one of two strategies.

``side_by_side`` when the slot has room for both models: load beside the old one, switch atomically, drain, free the
old one; the client's predictions never wait. ``replace`` when it has not: hold predictions, drain, free the old
model, load the new one, and on failure load the old one again. Either way a failure leaves the previous model
serving. The caller holds the slot's lock.
"""

import logging

from app.errors import ModelTooLarge, SlotServeError
from app.registry.batching import BatchPolicy
from app.registry.footprint import Footprint
from app.registry.slot import Slot, SlotState
from app.registry.store import ModelFile

log = logging.getLogger("slotserve.registry")


async def swap_in(slot: Slot, model_file: ModelFile, needs: Footprint, estimate: int,
                  policy: BatchPolicy) -> tuple[str, int, int]:
    """Make ``model_file`` the slot's model; return (strategy, bytes freed, bytes of residue)."""
    old = slot.loaded
    limit = slot.spec.limit_bytes
    in_use = await slot.work(slot.meter.in_use)
    slot.state = SlotState.LOADING
    freed = residue = 0
    try:
        if old is None:
            strategy = "load"
            await slot.work(slot.meter.reset_peak)
            slot.loaded = await slot.load(model_file, needs, limit - in_use, policy)
            return strategy, freed, residue
        strategy = "side_by_side" if in_use + estimate <= limit else "replace"
        if strategy == "side_by_side":
            try:
                slot.loaded = await slot.load(model_file, needs, limit - in_use, policy)  # the atomic switch
            except ModelTooLarge as exc:
                if exc.details.get("needed_bytes", 0) > limit:
                    raise  # its real size does not fit even an empty slot
                strategy = "replace"  # bigger than its file said (or out of memory): it may fit on its own
        if strategy == "side_by_side":
            await slot.drain(old)  # predictions already queued on the old model finish on it
            freed, residue = await slot.retire(old)
        else:
            del old
            freed, residue = await _replace(slot, model_file, needs, policy)
        return strategy, freed, residue
    finally:
        old = None
        if slot.loaded is not None:
            slot.state = SlotState.READY
            slot.open.set()


async def _replace(slot: Slot, model_file: ModelFile, needs: Footprint, policy: BatchPolicy) -> tuple[int, int]:
    """No room for both: hold new predictions, drain, free the old model, load the new one (or the old again)."""
    old = slot.loaded
    previous_file, previous_needs, previous_policy = old.file, old.footprint, old.queue.policy
    slot.open.clear()
    try:
        await slot.drain(old)
        slot.loaded = None
        freed, residue = await slot.retire(old)
        del old
        try:
            slot.loaded = await slot.load(model_file, needs, slot.spec.limit_bytes, policy)
            return freed, residue
        except SlotServeError as exc:
            err = exc
        try:
            slot.loaded = await slot.load(previous_file, previous_needs, slot.spec.limit_bytes, previous_policy)
        except SlotServeError as exc:
            log.error("slot=%d could not restore model %s: %s", slot.index, previous_file.name, exc.message)
        raise err
    finally:
        slot.open.set()

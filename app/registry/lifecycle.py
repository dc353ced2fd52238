"""A slot's lifecycle: the one owner of its phase, its client, the model it serves and whether predictions may run.

Nothing else changes these. Every change is an event of ``TRANSITIONS`` (anything else raises
``IllegalTransition``), and after each one the invariants of ``_check`` hold:

    phase       client  serving        predictions   what is happening
    empty       -       -              (no client)   free
    loading     yes     -              wait          a first load (or a restore) into a claimed slot
    ready       yes     model          run           serving
    swapping    yes     old model      run on old    side_by_side: the new model loads beside the old one
    replacing   yes     old, then -    wait          replace: the old one drains and is freed, the new one loads
    unloading   yes     model, then -  wait          the model drains and is freed; then the slot is released

    empty     --claim-->    loading   --serve-->   ready   --begin_side_by_side--> swapping --switch/abort--> ready
    loading   --release-->  empty                  ready   --begin_replace-->      replacing --serve--> ready
                                                                                   replacing --release--> empty
                                                   ready   --begin_unload-->       unloading --release--> empty

``drop`` (replacing, unloading) takes the model out of service so it can be freed; ``release`` requires that: a slot
is never released while it holds a model. Waiters use ``changed()``, which completes at the next transition.
"""

import asyncio
import enum
from typing import TYPE_CHECKING

from app.errors import ClientNotFound, ModelNotLoaded, SlotBusy

if TYPE_CHECKING:  # slot.py imports this module; the type is only a name here
    from app.registry.slot import Loaded


class Phase(str, enum.Enum):
    EMPTY = "empty"
    LOADING = "loading"
    READY = "ready"
    SWAPPING = "swapping"
    REPLACING = "replacing"
    UNLOADING = "unloading"


TRANSITIONS: dict[Phase, dict[str, Phase]] = {
    Phase.EMPTY: {"claim": Phase.LOADING},
    Phase.LOADING: {"serve": Phase.READY, "release": Phase.EMPTY},
    Phase.READY: {"begin_side_by_side": Phase.SWAPPING, "begin_replace": Phase.REPLACING,
                  "begin_unload": Phase.UNLOADING},
    Phase.SWAPPING: {"switch": Phase.READY, "abort": Phase.READY},
    Phase.REPLACING: {"drop": Phase.REPLACING, "serve": Phase.READY, "release": Phase.EMPTY},
    Phase.UNLOADING: {"drop": Phase.UNLOADING, "release": Phase.EMPTY},
}
OPEN = frozenset({Phase.EMPTY, Phase.READY, Phase.SWAPPING})  # predictions do not wait (empty: they fail at once)
SETTLED = frozenset({Phase.EMPTY, Phase.READY})  # no operation in progress


class IllegalTransition(AssertionError):
    """A lifecycle event the current phase does not allow: a bug, never a client's error."""


class SlotLifecycle:
    """Phase, client, serving model and the predictions' gate of one slot (see the module's table)."""

    def __init__(self) -> None:
        self.phase = Phase.EMPTY
        self.client: str | None = None
        self.serving: "Loaded | None" = None
        self.incoming: str | None = None  # the model a load, swap or restore is bringing in
        self._changed: asyncio.Future | None = None

    @property
    def open(self) -> bool:
        """Whether predictions may proceed now (they wait during first loads, replace swaps and unloads)."""
        return self.phase in OPEN

    @property
    def settled(self) -> bool:
        return self.phase in SETTLED

    def changed(self) -> asyncio.Future:
        """A future done at the next transition (shielded by whoever waits with a timeout)."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    # ---- events ------------------------------------------------------------------------------------------------

    def claim(self, client: str, incoming: str) -> None:
        """A free slot is taken by ``client``, whose first model ``incoming`` is about to load."""
        self._move("claim")
        self.client, self.incoming = client, incoming
        self._check()

    def serve(self, loaded: "Loaded") -> None:
        """``loaded`` serves: after a first load, or a replace (the new model, or the old one restored)."""
        self._move("serve")
        self.serving, self.incoming = loaded, None
        self._check()

    def begin_side_by_side(self, incoming: str) -> None:
        self._move("begin_side_by_side")
        self.incoming = incoming
        self._check()

    def switch(self, loaded: "Loaded") -> "Loaded":
        """The new model serves from now on; returns the old one, to drain and free."""
        old = self.serving
        self._move("switch")
        self.serving, self.incoming = loaded, None
        self._check()
        assert old is not None
        return old

    def abort(self) -> None:
        """The side_by_side load failed: the old model never stopped serving."""
        self._move("abort")
        self.incoming = None
        self._check()

    def begin_replace(self, incoming: str) -> None:
        self._move("begin_replace")
        self.incoming = incoming
        self._check()

    def begin_unload(self) -> None:
        self._move("begin_unload")
        self._check()

    def drop(self) -> "Loaded":
        """Take the (drained) model out of service so it can be freed; returns it."""
        old = self.serving
        self._move("drop")
        if old is None:
            raise IllegalTransition(f"drop in {self.phase.value} with no model")
        self.serving = None
        self._check()
        return old

    def release(self) -> str:
        """The client leaves the slot (unloaded, or a load that left it nothing); returns the client."""
        if self.serving is not None:
            raise IllegalTransition(f"release in {self.phase.value} while model '{self.serving.name}' is loaded")
        client = self.client
        self._move("release")
        self.client, self.incoming = None, None
        self._check()
        assert client is not None
        return client

    # ---- predictions -------------------------------------------------------------------------------------------

    async def serving_for(self, client: str, model: str | None, timeout_s: float) -> "Loaded":
        """The model that should answer ``client`` (which must be ``model`` when one is named), waiting up to
        ``timeout_s`` while predictions are held (first load, replace, unload) or while ``model`` is on its way in
        beside the old one (``SlotBusy`` when the wait runs out)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            incoming = model is not None and self.incoming == model and self.serving is not None \
                and self.serving.name != model
            if self.open and not incoming:
                loaded = self.serving
                if self.client != client or loaded is None:
                    raise ClientNotFound(f"Client '{client}' has no model loaded.", client=client)
                if model is not None and loaded.name != model:
                    raise ModelNotLoaded(f"Client '{client}' has not loaded model '{model}' "
                                         f"(it has '{loaded.name}').", client=client, model=model)
                return loaded
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(asyncio.shield(self.changed()), max(remaining, 0))
            except TimeoutError:
                raise SlotBusy(f"Client '{client}' is swapping models; try again shortly.", client=client) from None

    # ---- internals ---------------------------------------------------------------------------------------------

    def _move(self, event: str) -> None:
        target = TRANSITIONS[self.phase].get(event)
        if target is None:
            raise IllegalTransition(f"'{event}' is not allowed in phase {self.phase.value}")
        self.phase = target
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    def _check(self) -> None:
        phase, has_client, has_model = self.phase, self.client is not None, self.serving is not None
        valid = {
            Phase.EMPTY: not has_client and not has_model and self.incoming is None,
            Phase.LOADING: has_client and not has_model and self.incoming is not None,
            Phase.READY: has_client and has_model and self.incoming is None,
            Phase.SWAPPING: has_client and has_model and self.incoming is not None,
            Phase.REPLACING: has_client and self.incoming is not None,
            Phase.UNLOADING: has_client,
        }[phase]
        if not valid:
            raise IllegalTransition(f"phase {phase.value} with client={self.client!r}, "
                                    f"serving={self.serving and self.serving.name!r}, incoming={self.incoming!r}")

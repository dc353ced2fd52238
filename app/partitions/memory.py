"""Per-slot memory figures.

On a GPU each slot has its own BFC allocator, so its figures come from ``get_memory_info(device)`` (through the
device backend). On a CPU every logical device shares one allocator, so a slot's figure is the exact byte count of the
tensors it still holds: weak references to each loaded model's variables. The same weak references find residue after
an unload on both kinds: anything still alive after ``gc.collect()`` was not freed.

A BFC allocator rounds every allocation up (to 256 bytes, and a chunk may carry a little more: a 4 MiB variable reads
4,194,560 bytes), so on a GPU a slot's figure is its tensors' bytes plus up to ``ALLOCATOR_SLACK`` per tensor.
"""

import gc
import threading
import weakref
from collections.abc import Iterable

from app.partitions.devices import DeviceBackend, default_backend
from app.partitions.plan import SlotSpec

# The most a BFC allocator may add to one tensor's bytes: rounding up to its 256-byte granule, plus one granule.
ALLOCATOR_SLACK = 2 * 256


class TrackedGroup:
    """The tensors of one loaded model, held weakly: its variables, and the constants of its graph.

    The weak reference is to each variable's resource handle, not to the Python variable: the handle is what keeps
    the device memory alive, and a traced function that outlives its model holds handles, not variables. Graph
    constants have no handle of their own: they live as long as the object owning the graph (``graph_owner``).
    """

    def __init__(self, variables: Iterable, graph_owner: object | None = None, constant_bytes: int = 0) -> None:
        self._refs: list[tuple[weakref.ref, int]] = []
        for var in variables:
            nbytes = int(var.shape.num_elements() or 0) * var.dtype.size
            self._refs.append((weakref.ref(getattr(var, "handle", var)), nbytes))
        if graph_owner is not None and constant_bytes:
            self._refs.append((weakref.ref(graph_owner), constant_bytes))
        self.nbytes = sum(n for _, n in self._refs)
        self.tensors = len(self._refs)

    def live_bytes(self) -> int:
        """Bytes of the group's tensors that are still alive."""
        return sum(n for ref, n in self._refs if ref() is not None)


class TensorLedger:
    """Every group a slot has tracked; groups drop out once all their tensors are gone."""

    def __init__(self) -> None:
        self._groups: list[TrackedGroup] = []
        self._lock = threading.Lock()

    def track(self, variables: Iterable, graph_owner: object | None = None, constant_bytes: int = 0) -> TrackedGroup:
        group = TrackedGroup(variables, graph_owner, constant_bytes)
        with self._lock:
            self._groups.append(group)
        return group

    def live_bytes(self) -> int:
        with self._lock:
            live = [(g, g.live_bytes()) for g in self._groups]
            self._groups = [g for g, n in live if n > 0]
        return sum(n for _, n in live)


class SlotMeter:
    """In-use and peak bytes of one slot, from its allocator (GPU) or its ledger (CPU)."""

    def __init__(self, spec: SlotSpec, ledger: TensorLedger, backend: DeviceBackend | None = None) -> None:
        self._spec = spec
        self._ledger = ledger
        self._backend = backend if backend is not None else default_backend()
        self._peak = 0

    @property
    def uses_allocator(self) -> bool:
        return self._spec.kind == "gpu"

    def in_use(self) -> int:
        if self.uses_allocator:
            return self._backend.memory_info(self._spec.device)[0]
        current = self._ledger.live_bytes()
        self._peak = max(self._peak, current)
        return current

    def peak(self) -> int:
        if self.uses_allocator:
            return self._backend.memory_info(self._spec.device)[1]
        return max(self._peak, self.in_use())

    def reset_peak(self) -> None:
        """Restart peak tracking from the current figure (done at each load)."""
        if self.uses_allocator:
            self._backend.reset_memory_stats(self._spec.device)
        self._peak = self._ledger.live_bytes()

    def unexplained(self, measured: int, baseline: int, held: TrackedGroup | None) -> int:
        """Bytes the allocator holds beyond the empty slot's ``baseline`` and the tensors of ``held`` (the model
        still loaded, if any), allowing the allocator's rounding of each; always 0 on a CPU (no allocator of its
        own). Read with predictions held, this is residue no weak reference sees (temporaries, graph buffers)."""
        if not self.uses_allocator:
            return 0
        held_bytes = held.nbytes + held.tensors * ALLOCATOR_SLACK if held is not None else 0
        return max(measured - baseline - held_bytes, 0)


def host_allocator_bytes() -> int:
    """Bytes in use in the host (CPU) allocator shared by every CPU slot; real only with the BFC allocator on."""
    return default_backend().memory_info("/device:CPU:0")[0]


# gc.collect() returns at once, collecting nothing, while another thread is collecting; two slots freeing models at
# the same time would then measure each other's garbage as residue. One collection at a time, process-wide.
_COLLECTING = threading.Lock()


def collect_garbage(group: TrackedGroup | None = None) -> None:
    """Collect garbage (serialised across threads); with ``group``, until its tensors are gone or 3 passes ran,
    since freeing one cycle's variables can release another cycle."""
    with _COLLECTING:
        for _ in range(3):
            gc.collect()
            if group is None or not group.live_bytes():
                return

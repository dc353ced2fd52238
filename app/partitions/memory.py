"""Per-slot memory figures.

On a GPU each slot has its own BFC allocator, so its figures come from ``get_memory_info(device)``. On a CPU every
logical device shares one allocator, so a slot's figure is the exact byte count of the tensors it still holds: weak
references to each loaded model's variables. The same weak references find residue after an unload on both kinds:
anything still alive after ``gc.collect()`` was not freed.
"""

import gc
import threading
import weakref
from collections.abc import Iterable

import tensorflow as tf

from app.partitions.plan import SlotSpec


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

    def __init__(self, spec: SlotSpec, ledger: TensorLedger) -> None:
        self._spec = spec
        self._ledger = ledger
        self._peak = 0

    @property
    def uses_allocator(self) -> bool:
        return self._spec.kind == "gpu"

    def in_use(self) -> int:
        if self.uses_allocator:
            return int(tf.config.experimental.get_memory_info(_short(self._spec.device))["current"])
        current = self._ledger.live_bytes()
        self._peak = max(self._peak, current)
        return current

    def peak(self) -> int:
        if self.uses_allocator:
            return int(tf.config.experimental.get_memory_info(_short(self._spec.device))["peak"])
        return max(self._peak, self.in_use())

    def reset_peak(self) -> None:
        """Restart peak tracking from the current figure (done at each load)."""
        if self.uses_allocator:
            tf.config.experimental.reset_memory_stats(_short(self._spec.device))
        self._peak = self._ledger.live_bytes()


def host_allocator_bytes() -> int:
    """Bytes in use in the host (CPU) allocator shared by every CPU slot; real only with the BFC allocator on."""
    return int(tf.config.experimental.get_memory_info("CPU:0")["current"])


def _short(device: str) -> str:
    # get_memory_info wants "GPU:3", not "/device:GPU:3"
    return device.rsplit("device:", 1)[-1]


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

"""The device backend: the few TensorFlow calls the partition plan and the slot meters make, behind one seam.

``plan_partitions`` and ``SlotMeter`` talk to a ``DeviceBackend``, never to ``tf.config`` directly, so the GPU
branch's logic (naming, ownership, the fit check, device matching, allocator figures) runs on any host against a
stand-in. ``TensorFlowBackend`` is the real one and the default; it is the only code here that asks the hardware.
"""

import logging
import os
from dataclasses import dataclass
from typing import Literal, Protocol

import tensorflow as tf

from app.partitions.cuda import cuda_devices
from app.partitions.visible import check_visible, match_devices, visible_entries

log = logging.getLogger("slotserve.partitions")
DeviceKind = Literal["gpu", "cpu"]
# The logical-device layout a backend was configured with: (kind, slots per physical device, MiB or None).
Layout = tuple[DeviceKind, int, int | None]


@dataclass(frozen=True)
class PhysicalDevice:
    """A physical device as TensorFlow names it, with what the driver says about it (``None``: not known)."""

    name: str  # "/physical_device:GPU:0"
    kind: DeviceKind
    model: str | None = None  # "NVIDIA A100-SXM4-40GB"
    uuid: str | None = None  # "GPU-5d5ba0d6-..." or "MIG-..."
    total_mb: int | None = None


class DeviceBackend(Protocol):
    """What planning and metering need from the runtime. ``layout`` is what ``configure`` was last used for
    (set by the planner), since the runtime accepts one configuration per process."""

    layout: Layout | None

    def physical_devices(self, kind: DeviceKind) -> list[PhysicalDevice]:
        """The physical devices of ``kind`` in the runtime's order, with names, UUIDs and totals where known."""
        ...

    def configure(self, device: PhysicalDevice, memory_limits_mb: list[int | None]) -> None:
        """Split ``device`` into one logical device per limit; ``RuntimeError``/``ValueError`` once initialised."""
        ...

    def hide_gpus(self) -> None:
        """Keep the runtime off every GPU (a CPU plan must not take the GPUs' memory)."""
        ...

    def logical_devices(self, kind: DeviceKind) -> list[str]:
        """Logical device names of ``kind`` (``/device:GPU:3``); starts the runtime (``RuntimeError``/``OpError``)."""
        ...

    def memory_info(self, device: str) -> tuple[int, int]:
        """(current, peak) bytes of ``device``'s allocator."""
        ...

    def reset_memory_stats(self, device: str) -> None:
        """Restart ``device``'s peak from its current figure."""
        ...


class TensorFlowBackend:
    """The real backend: ``tf.config`` for devices and allocators, the CUDA driver for GPU names, UUIDs, totals."""

    def __init__(self) -> None:
        self.layout: Layout | None = None
        self._gpus: list[PhysicalDevice] | None = None

    def physical_devices(self, kind: DeviceKind) -> list[PhysicalDevice]:
        if kind == "cpu":
            return [PhysicalDevice(d.name, "cpu") for d in tf.config.list_physical_devices("CPU")]
        if self._gpus is None:
            self._gpus = self._describe_gpus()
        return list(self._gpus)

    def configure(self, device: PhysicalDevice, memory_limits_mb: list[int | None]) -> None:
        physical = next(d for d in tf.config.list_physical_devices(device.kind.upper()) if d.name == device.name)
        config = [tf.config.LogicalDeviceConfiguration(memory_limit=mb) for mb in memory_limits_mb]
        tf.config.set_logical_device_configuration(physical, config)

    def hide_gpus(self) -> None:
        tf.config.set_visible_devices([], "GPU")

    def logical_devices(self, kind: DeviceKind) -> list[str]:
        return [d.name for d in tf.config.list_logical_devices(kind.upper())]

    def memory_info(self, device: str) -> tuple[int, int]:
        info = tf.config.experimental.get_memory_info(short_name(device))
        return int(info["current"]), int(info["peak"])

    def reset_memory_stats(self, device: str) -> None:
        tf.config.experimental.reset_memory_stats(short_name(device))

    def _describe_gpus(self) -> list[PhysicalDevice]:
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return []
        names = [tf.config.experimental.get_device_details(g).get("device_name") for g in gpus]
        cuda = cuda_devices()
        if cuda is None:
            log.warning("the CUDA driver could not be asked for the GPUs' memory; TensorFlow alone checks the plan")
            return [PhysicalDevice(g.name, "gpu", n) for g, n in zip(gpus, names, strict=True)]
        if warning := check_visible(visible_entries(os.environ.get("CUDA_VISIBLE_DEVICES")), cuda):
            log.warning(warning)
        paired = match_devices(names, cuda)
        return [PhysicalDevice(g.name, "gpu", n, c.uuid if c else None, c.total_mb if c else None)
                for g, n, c in zip(gpus, names, paired, strict=True)]


def short_name(device: str) -> str:
    """``/device:GPU:3`` -> ``GPU:3``, the form ``get_memory_info`` wants."""
    return device.rsplit("device:", 1)[-1]


_DEFAULT: TensorFlowBackend | None = None


def default_backend() -> TensorFlowBackend:
    """The process's real backend (one per process, as TensorFlow's configuration is)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = TensorFlowBackend()
    return _DEFAULT

"""Turn the configuration into a fixed plan of TensorFlow logical devices, exactly once per process."""

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal

import tensorflow as tf

from app.errors import PlanError

MIB = 1 << 20
DeviceKind = Literal["gpu", "cpu"]


@dataclass(frozen=True)
class SlotSpec:
    """One slot: a TensorFlow logical device with a fixed memory limit."""

    index: int
    device: str  # TensorFlow device name, e.g. "/device:GPU:3"
    kind: DeviceKind
    limit_bytes: int
    physical: str  # physical device it was cut from, e.g. "/physical_device:GPU:0"


# The logical-device layout TensorFlow was configured with: (kind, slots per physical device, MB or None).
_applied: tuple[DeviceKind, int, int | None] | None = None


def plan_partitions(slots: int, slot_memory_mb: int, device: str = "auto") -> tuple[SlotSpec, ...]:
    """Split every GPU (or the CPU) into ``slots`` logical devices of ``slot_memory_mb`` MiB each.

    TensorFlow accepts this configuration only before its runtime starts, so the layout is applied once per process;
    asking again for the same layout returns the same slots. On a CPU-only host the memory limit is a budget that the
    registry enforces (TensorFlow refuses ``memory_limit`` for CPUs), so it may differ between calls.
    Raises ``PlanError`` with a one-line reason when the plan cannot be applied.
    """
    global _applied
    if slots < 1 or slot_memory_mb < 1:
        raise PlanError("slots and slot memory must both be at least 1")
    gpus = tf.config.list_physical_devices("GPU") if device in ("auto", "gpu") else []
    if device == "gpu" and not gpus:
        raise PlanError("device=gpu was asked for but TensorFlow sees no GPU on this host")
    kind: DeviceKind = "gpu" if gpus else "cpu"
    layout = (kind, slots, slot_memory_mb if kind == "gpu" else None)
    if kind == "cpu":
        _check_host_ram(slots, slot_memory_mb)
    if _applied is None:
        if kind == "gpu":
            _configure_gpus(gpus, slots, slot_memory_mb)
        else:
            _configure_cpu(slots)
        _applied = layout
    elif _applied != layout:
        raise PlanError(f"TensorFlow is already partitioned as {_applied}; a process holds one plan, not {layout}")
    return _specs(kind, slots, slot_memory_mb * MIB)


def _configure_gpus(gpus: list, slots: int, slot_memory_mb: int) -> None:
    totals = _gpu_total_mb()
    for i, gpu in enumerate(gpus):
        total = totals[i] if i < len(totals) else None
        if total is not None and slots * slot_memory_mb > total:
            raise PlanError(
                f"{slots} slots x {slot_memory_mb} MiB = {slots * slot_memory_mb} MiB does not fit GPU {i} "
                f"({total} MiB); lower --slots or --slot-memory-mb"
            )
        config = [tf.config.LogicalDeviceConfiguration(memory_limit=slot_memory_mb) for _ in range(slots)]
        _apply(gpu, config)
    try:
        tf.config.list_logical_devices("GPU")  # starts the runtime: a plan the driver refuses fails here
    except (RuntimeError, tf.errors.OpError) as exc:
        raise PlanError(f"the GPU driver refused the slot plan: {exc}") from None


def _check_host_ram(slots: int, slot_memory_mb: int) -> None:
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB
    if slots * slot_memory_mb > ram_mb:
        raise PlanError(
            f"{slots} slots x {slot_memory_mb} MiB = {slots * slot_memory_mb} MiB does not fit this host's "
            f"{ram_mb} MiB of RAM; lower --slots or --slot-memory-mb"
        )


def _configure_cpu(slots: int) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    _apply(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(slots)])


def _apply(physical, config: list) -> None:
    try:
        tf.config.set_logical_device_configuration(physical, config)
    except (RuntimeError, ValueError) as exc:
        raise PlanError(f"cannot partition {physical.name}: {exc} (TensorFlow was initialised before the plan)") from None


def _specs(kind: DeviceKind, slots: int, limit_bytes: int) -> tuple[SlotSpec, ...]:
    device_type = kind.upper()
    logical = tf.config.list_logical_devices(device_type)
    physical = tf.config.list_physical_devices(device_type)
    specs = []
    for index, dev in enumerate(logical):
        owner = physical[min(index // slots, len(physical) - 1)].name
        specs.append(SlotSpec(index, dev.name, kind, limit_bytes, owner))
    return tuple(specs)


def _gpu_total_mb() -> list[int]:
    """Total memory of each GPU in MiB, from nvidia-smi; empty when it is not installed (TF then checks)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    totals = [int(line.strip()) for line in out.splitlines() if line.strip().isdigit()]
    if visible:
        picks = [int(v) for v in visible.split(",") if v.strip().isdigit()]
        totals = [totals[p] for p in picks if p < len(totals)]
    return totals

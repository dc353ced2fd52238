"""Turn the configuration into a fixed plan of TensorFlow logical devices, exactly once per process."""

import logging
import os
from dataclasses import dataclass

from app.errors import PlanError
from app.partitions.devices import DeviceBackend, DeviceKind, Layout, PhysicalDevice, default_backend

MIB = 1 << 20
# Memory each GPU keeps outside its slots: the CUDA context and cuDNN/cuBLAS handles and workspaces.
DEFAULT_GPU_HEADROOM_MB = 512
log = logging.getLogger("slotserve.partitions")

__all__ = ["DEFAULT_GPU_HEADROOM_MB", "DeviceKind", "SlotSpec", "describe_plan", "plan_partitions"]


@dataclass(frozen=True)
class SlotSpec:
    """One slot: a TensorFlow logical device with a fixed memory limit."""

    index: int
    device: str  # TensorFlow device name, e.g. "/device:GPU:3"
    kind: DeviceKind
    limit_bytes: int
    physical: str  # physical device it was cut from, e.g. "/physical_device:GPU:0"


def plan_partitions(slots: int, slot_memory_mb: int, device: str = "auto",
                    gpu_headroom_mb: int = DEFAULT_GPU_HEADROOM_MB,
                    backend: DeviceBackend | None = None) -> tuple[SlotSpec, ...]:
    """Split every GPU (or the CPU) into ``slots`` logical devices of ``slot_memory_mb`` MiB each.

    TensorFlow accepts this configuration only before its runtime starts, so the layout is applied once per process
    (per ``backend``: the real one by default); asking again for the same layout returns the same slots. Each GPU must
    hold its slots plus ``gpu_headroom_mb`` for what lives outside them. On a CPU-only host the memory limit is a
    budget that the registry enforces (TensorFlow refuses ``memory_limit`` for CPUs), so it may differ between calls;
    a CPU plan on a host with GPUs keeps TensorFlow off them. The applied plan is logged in one line.
    Raises ``PlanError`` with a one-line reason when the plan cannot be applied.
    """
    backend = backend if backend is not None else default_backend()
    if slots < 1 or slot_memory_mb < 1:
        raise PlanError("slots and slot memory must both be at least 1")
    if gpu_headroom_mb < 0:
        raise PlanError("the GPU headroom cannot be negative")
    gpus = backend.physical_devices("gpu")
    if device == "gpu" and not gpus:
        raise PlanError("device=gpu was asked for but TensorFlow sees no GPU on this host")
    kind: DeviceKind = "gpu" if gpus and device in ("auto", "gpu") else "cpu"
    layout: Layout = (kind, slots, slot_memory_mb if kind == "gpu" else None)
    if kind == "cpu":
        _check_host_ram(slots, slot_memory_mb)
    if backend.layout is None:
        if kind == "gpu":
            _check_gpus_fit(gpus, slots, slot_memory_mb, gpu_headroom_mb)
            _configure(backend, gpus, [slot_memory_mb] * slots)
        else:
            if gpus:
                _hide_gpus(backend)
            _configure(backend, backend.physical_devices("cpu")[:1], [None] * slots)
        backend.layout = layout
        specs = _specs(backend, kind, slots, slot_memory_mb * MIB)
        physical = gpus if kind == "gpu" else backend.physical_devices("cpu")[:1]
        log.info(describe_plan(kind, physical, slots, slot_memory_mb, gpu_headroom_mb))
        return specs
    if backend.layout != layout:
        raise PlanError(f"TensorFlow is already partitioned as {backend.layout}; a process holds one plan, "
                        f"not {layout}")
    return _specs(backend, kind, slots, slot_memory_mb * MIB)


def describe_plan(kind: DeviceKind, physical: list[PhysicalDevice], slots: int, slot_memory_mb: int,
                  gpu_headroom_mb: int) -> str:
    """The plan in one log line: device kind, each GPU (name, UUID, total), slots per device, slot MiB, headroom."""
    if kind == "cpu":
        return (f"slot plan: device=cpu slots={slots} slot_mib={slot_memory_mb} (a budget the registry enforces; "
                f"every CPU slot shares the host allocator)")
    gpus = "; ".join(f"{d.name.rsplit('physical_device:', 1)[-1]} {d.model or 'unknown model'} "
                     f"{d.uuid or 'uuid unknown'} {_mib(d.total_mb)}" for d in physical)
    return (f"slot plan: device=gpu gpus={len(physical)} [{gpus}] slots_per_gpu={slots} slot_mib={slot_memory_mb} "
            f"headroom_mib={gpu_headroom_mb} slots_total={slots * len(physical)}")


def _check_gpus_fit(gpus: list[PhysicalDevice], slots: int, slot_memory_mb: int, headroom_mb: int) -> None:
    need = slots * slot_memory_mb + headroom_mb
    for i, gpu in enumerate(gpus):
        if gpu.total_mb is None:
            log.warning("the total memory of GPU %d is unknown; TensorFlow alone checks that the plan fits it", i)
        elif need > gpu.total_mb:
            raise PlanError(
                f"{slots} slots x {slot_memory_mb} MiB + {headroom_mb} MiB headroom = {need} MiB does not fit GPU {i} "
                f"({gpu.model or 'unknown model'}, {gpu.total_mb} MiB); lower --slots, --slot-memory-mb or "
                f"--gpu-headroom-mb"
            )


def _check_host_ram(slots: int, slot_memory_mb: int) -> None:
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB
    if slots * slot_memory_mb > ram_mb:
        raise PlanError(
            f"{slots} slots x {slot_memory_mb} MiB = {slots * slot_memory_mb} MiB does not fit this host's "
            f"{ram_mb} MiB of RAM; lower --slots or --slot-memory-mb"
        )


def _configure(backend: DeviceBackend, devices: list[PhysicalDevice], limits: list[int | None]) -> None:
    for device in devices:
        try:
            backend.configure(device, limits)
        except (RuntimeError, ValueError) as exc:
            raise PlanError(f"cannot partition {device.name}: {_one_line(exc)} "
                            "(TensorFlow was initialised before the plan)") from None


def _hide_gpus(backend: DeviceBackend) -> None:
    try:
        backend.hide_gpus()
    except (RuntimeError, ValueError) as exc:
        raise PlanError(f"cannot keep TensorFlow off the GPUs for a CPU plan: {_one_line(exc)}") from None


def _specs(backend: DeviceBackend, kind: DeviceKind, slots: int, limit_bytes: int) -> tuple[SlotSpec, ...]:
    """Slots in TensorFlow's logical order: each physical device's logical devices come together, in its order."""
    try:
        logical = backend.logical_devices(kind)  # starts the runtime: a plan the driver refuses fails here
    except Exception as exc:  # noqa: BLE001 - RuntimeError or any tf.errors.OpError from the driver
        raise PlanError(f"the {kind.upper()} driver refused the slot plan: {_one_line(exc)}") from None
    physical = backend.physical_devices(kind)
    if kind == "cpu":
        physical = physical[:1]
    if len(logical) != len(physical) * slots:
        raise PlanError(f"TensorFlow made {len(logical)} logical {kind.upper()}s, not {len(physical)} x {slots} "
                        "as planned")
    return tuple(SlotSpec(index, name, kind, limit_bytes, physical[index // slots].name)
                 for index, name in enumerate(logical))


def _mib(total_mb: int | None) -> str:
    return f"{total_mb} MiB" if total_mb is not None else "total unknown"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]

"""CUDA's own list of the devices visible to this process, read from the driver (``libcuda.so.1``) with ctypes.

The driver has already applied ``CUDA_VISIBLE_DEVICES`` (indexes, ``GPU-`` UUIDs, ``MIG-`` instances) and
``CUDA_DEVICE_ORDER``, exactly as for TensorFlow in the same process, and reports a MIG instance's own memory, which
nvidia-smi's per-GPU query cannot. Only device queries are made: no context is created and no memory is allocated.
Not exercised on this project's CI host (it has no NVIDIA driver): there the library is absent and this answers
``None``, which the plan treats as "totals unknown".
"""

import ctypes
import logging

from app.partitions.visible import CudaDevice, format_uuid

log = logging.getLogger("slotserve.partitions")
_SUCCESS = 0


def cuda_devices() -> list[CudaDevice] | None:
    """The visible CUDA devices in CUDA's order, or ``None`` when the driver cannot be asked."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    try:
        return _query(lib)
    except (AttributeError, OSError) as exc:  # a symbol missing from an old driver
        log.warning("could not read the GPUs' memory from the CUDA driver: %s", exc)
        return None


def _query(lib: ctypes.CDLL) -> list[CudaDevice] | None:
    count = ctypes.c_int()
    if lib.cuInit(0) != _SUCCESS or lib.cuDeviceGetCount(ctypes.byref(count)) != _SUCCESS:
        return None
    get_uuid = getattr(lib, "cuDeviceGetUuid_v2", None) or lib.cuDeviceGetUuid  # v2 gives a MIG instance's own
    total_mem = getattr(lib, "cuDeviceTotalMem_v2", None) or lib.cuDeviceTotalMem
    devices = []
    for ordinal in range(count.value):
        handle = ctypes.c_int()
        name = ctypes.create_string_buffer(256)
        total = ctypes.c_size_t()
        uuid = (ctypes.c_ubyte * 16)()
        calls = (
            lib.cuDeviceGet(ctypes.byref(handle), ordinal),
            lib.cuDeviceGetName(name, ctypes.c_int(len(name)), handle),
            total_mem(ctypes.byref(total), handle),
            get_uuid(ctypes.byref(uuid), handle),
        )
        if any(code != _SUCCESS for code in calls):
            return None
        text = name.value.decode(errors="replace")
        devices.append(CudaDevice(ordinal, text, format_uuid(bytes(uuid), " MIG " in f"{text} "), total.value >> 20))
    return devices

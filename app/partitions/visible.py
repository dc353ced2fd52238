"""Which GPU is which: CUDA's visible devices, ``CUDA_VISIBLE_DEVICES`` entries and TensorFlow's GPUs, matched.

TensorFlow numbers its GPUs in CUDA's order (``CUDA_DEVICE_ORDER``, fastest first by default) after applying
``CUDA_VISIBLE_DEVICES``, and skips devices it cannot use (too old a compute capability). nvidia-smi numbers GPUs by
PCI bus and ignores ``CUDA_VISIBLE_DEVICES``, so pairing its rows with TensorFlow's by position picks the wrong card's
memory whenever those differ, and it lists no MIG instances at all. The inventory here is CUDA's own (the driver's
visible devices, already filtered and ordered by CUDA); this module only pairs it with TensorFlow's list and tells
the user when ``CUDA_VISIBLE_DEVICES`` asked for something CUDA did not give. Pure functions: tested on any host.
"""

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CudaDevice:
    """One device as the CUDA driver sees it in this process: its ordinal, name, UUID and total memory."""

    ordinal: int
    name: str  # "NVIDIA A100-SXM4-40GB", or "NVIDIA A100-SXM4-40GB MIG 1g.5gb" for a MIG instance
    uuid: str  # "GPU-5d5ba0d6-..." or "MIG-c6d4f1ef-..."
    total_mb: int


def format_uuid(raw: bytes, mig: bool) -> str:
    """The 16 bytes the driver gives as nvidia-smi prints them: ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``."""
    h = raw.hex()
    return f"{'MIG' if mig else 'GPU'}-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def visible_entries(value: str | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` split into entries; ``None`` when unset (every device visible)."""
    if value is None:
        return None
    return [entry.strip() for entry in value.split(",")] if value.strip() else []


def check_visible(entries: list[str] | None, devices: Sequence[CudaDevice]) -> str | None:
    """A one-line warning when CUDA did not make visible what ``CUDA_VISIBLE_DEVICES`` lists, else ``None``.

    CUDA's ordinal k is the k-th entry it accepted, and it stops at the first entry naming no device (silently
    ignoring the rest). So entries pair with devices by position: a ``GPU-``/``MIG-`` entry must be a prefix of its
    device's UUID, and entries past the last device were dropped. Index entries cannot be checked in-process (CUDA
    already renumbered the devices); legacy ``MIG-GPU-<uuid>/<gi>/<ci>`` entries are accepted as they are.
    """
    if entries is None:
        return None
    for position, entry in enumerate(entries):
        if position >= len(devices):
            return (f"CUDA_VISIBLE_DEVICES entry {position} ({entry!r}) names no device CUDA can use; CUDA ignores it "
                    f"and every entry after it, so {len(devices)} device(s) are visible")
        wanted = _uuid_hex(entry)
        if wanted is not None and not _uuid_hex(devices[position].uuid).startswith(wanted):
            return (f"CUDA_VISIBLE_DEVICES entry {position} ({entry!r}) does not match CUDA's device {position} "
                    f"({devices[position].uuid}); check the list")
    return None


def match_devices(tf_names: Sequence[str | None], devices: Sequence[CudaDevice]) -> list[CudaDevice | None]:
    """Pair TensorFlow's GPUs (by their device names, in TensorFlow's order) with CUDA's visible devices.

    TensorFlow keeps CUDA's order and may skip devices, so its list is a subsequence of CUDA's: each TensorFlow GPU
    takes the next CUDA device with the same name. A GPU that cannot be paired (no name, none left) gets ``None``,
    and so does every one after it: a guess would check the plan against another card's memory.
    """
    paired: list[CudaDevice | None] = []
    cursor = 0
    for name in tf_names:
        found = None
        if name is not None and (not paired or paired[-1] is not None):
            for k in range(cursor, len(devices)):
                if devices[k].name == name:
                    found, cursor = devices[k], k + 1
                    break
        paired.append(found)
    return paired


def _uuid_hex(text: str) -> str | None:
    """The hex digits of a ``GPU-``/``MIG-`` UUID (lower case, no dashes); ``None`` for index and legacy entries."""
    for prefix in ("GPU-", "MIG-"):
        if text.upper().startswith(prefix):
            rest = text[len(prefix):]
            if rest.upper().startswith("GPU-"):  # legacy MIG-GPU-<uuid>/<gi>/<ci>
                return None
            return rest.replace("-", "").lower()
    return None

"""A stand-in device backend for control-flow tests of the GPU branch (no GPU is reachable from this project's CI).

It implements ``app.partitions.DeviceBackend`` with plain bookkeeping: what was configured, hidden and started, and
allocator figures the test itself sets. Nothing it returns is a measurement: a test using it checks what the planner
and the meters do with such answers, not what a GPU would answer. Its rules copy TensorFlow's documented ones: the
configuration is refused once the runtime started (by listing logical devices), CPUs refuse a memory limit, and
logical devices are numbered across physical devices in order.
"""

from app.partitions import PhysicalDevice
from app.partitions.devices import DeviceKind, Layout

MIB = 1 << 20


def gpu(index: int, total_mb: int | None, model: str = "NVIDIA A100-SXM4-40GB", uuid: str | None = None) -> PhysicalDevice:
    return PhysicalDevice(f"/physical_device:GPU:{index}", "gpu", model, uuid or f"GPU-{index:08x}-0000-0000-0000-"
                          f"{index:012x}", total_mb)


class FakeDevices:
    """Bookkeeping behind the backend protocol; ``allocators`` maps a device name to its (current, peak) bytes."""

    def __init__(self, gpus: list[PhysicalDevice], refuse_plan: str | None = None) -> None:
        self.layout: Layout | None = None
        self._physical = {"gpu": list(gpus), "cpu": [PhysicalDevice("/physical_device:CPU:0", "cpu")]}
        self.configured: dict[str, list[int | None]] = {}
        self.hidden = False
        self.started = False
        self.refuse_plan = refuse_plan  # what a driver refusing the plan at start-up would say
        self.allocators: dict[str, tuple[int, int]] = {}
        self.resets: list[str] = []

    def physical_devices(self, kind: DeviceKind) -> list[PhysicalDevice]:
        return list(self._physical[kind])

    def configure(self, device: PhysicalDevice, memory_limits_mb: list[int | None]) -> None:
        if self.started:
            raise RuntimeError("Virtual devices cannot be modified after being initialized")
        if device.kind == "cpu" and any(mb is not None for mb in memory_limits_mb):
            raise ValueError("Setting memory limit on CPU virtual devices is currently not supported")
        self.configured[device.name] = list(memory_limits_mb)

    def hide_gpus(self) -> None:
        if self.started:
            raise RuntimeError("Visible devices cannot be modified after being initialized")
        self.hidden = True

    def logical_devices(self, kind: DeviceKind) -> list[str]:
        self.started = True
        if self.refuse_plan:
            raise RuntimeError(self.refuse_plan)
        if kind == "gpu" and self.hidden:
            return []
        names: list[str] = []
        for device in self._physical[kind]:
            count = len(self.configured.get(device.name, [None]))
            names += [f"/device:{kind.upper()}:{len(names) + i}" for i in range(count)]
        return names

    def memory_info(self, device: str) -> tuple[int, int]:
        return self.allocators.get(device, (0, 0))

    def reset_memory_stats(self, device: str) -> None:
        current, _ = self.memory_info(device)
        self.allocators[device] = (current, current)
        self.resets.append(device)

    def set_current(self, device: str, current: int) -> None:
        """What the test says the device's allocator holds now; the peak follows as an allocator's would."""
        _, peak = self.memory_info(device)
        self.allocators[device] = (current, max(peak, current))

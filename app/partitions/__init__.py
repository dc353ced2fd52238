"""Physical devices -> fixed-size logical devices ("slots"), and per-slot memory figures. Imports TensorFlow."""

from app.partitions.devices import DeviceBackend, PhysicalDevice, TensorFlowBackend, default_backend
from app.partitions.memory import (
    ALLOCATOR_SLACK,
    SlotMeter,
    TensorLedger,
    TrackedGroup,
    collect_garbage,
    host_allocator_bytes,
)
from app.partitions.plan import DEFAULT_GPU_HEADROOM_MB, SlotSpec, describe_plan, plan_partitions

__all__ = ["ALLOCATOR_SLACK", "DEFAULT_GPU_HEADROOM_MB", "DeviceBackend", "PhysicalDevice", "SlotMeter", "SlotSpec",
           "TensorFlowBackend", "TensorLedger", "TrackedGroup", "collect_garbage", "default_backend", "describe_plan",
           "host_allocator_bytes", "plan_partitions"]

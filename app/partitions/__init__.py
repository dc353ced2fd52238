"""Physical devices -> fixed-size logical devices ("slots"), and per-slot memory figures. Imports TensorFlow."""

from app.partitions.memory import SlotMeter, TensorLedger, TrackedGroup, collect_garbage, host_allocator_bytes
from app.partitions.plan import SlotSpec, plan_partitions

__all__ = ["SlotMeter", "collect_garbage", "SlotSpec", "TensorLedger", "TrackedGroup", "host_allocator_bytes", "plan_partitions"]

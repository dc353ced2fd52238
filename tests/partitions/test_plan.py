"""The partition plan: one per process, refused with a clear reason when it cannot fit.

These run the real backend on the session's plan (logical CPUs, or GPUs with SLOTSERVE_TEST_DEVICE=gpu); what the
host has decides what asking for a GPU means, and each host checks its own answer.
"""

import pytest

from app.errors import PlanError
from app.partitions import SlotSpec, default_backend, plan_partitions
from tests.conftest import SLOT_MB, SLOTS
from tests.helpers import DEVICE, HAS_GPU


def test_each_slot_knows_index_device_kind_and_limit(specs: tuple[SlotSpec, ...]) -> None:
    per_device = len(specs) // SLOTS
    assert [s.index for s in specs] == list(range(SLOTS * per_device))
    assert [s.device for s in specs] == [f"/device:{DEVICE.upper()}:{i}" for i in range(len(specs))]
    assert {s.kind for s in specs} == {DEVICE}
    assert {s.limit_bytes for s in specs} == {SLOT_MB * 2**20}
    assert default_backend().layout == (DEVICE, SLOTS, SLOT_MB if DEVICE == "gpu" else None)


def test_the_same_plan_again_returns_the_same_slots(specs: tuple[SlotSpec, ...]) -> None:
    assert plan_partitions(SLOTS, SLOT_MB, DEVICE) == specs
    if HAS_GPU and DEVICE == "cpu":  # auto means the GPU here: another plan than the session's
        with pytest.raises(PlanError, match="already partitioned"):
            plan_partitions(SLOTS, SLOT_MB, "auto")
    else:
        assert plan_partitions(SLOTS, SLOT_MB, "auto") == specs


@pytest.mark.skipif(DEVICE != "cpu", reason="on a GPU the slot memory is part of the layout")
def test_cpu_budget_may_change_but_the_layout_may_not(specs: tuple[SlotSpec, ...]) -> None:
    bigger = plan_partitions(SLOTS, 2 * SLOT_MB, "cpu")
    assert [s.device for s in bigger] == [s.device for s in specs]
    assert {s.limit_bytes for s in bigger} == {2 * SLOT_MB * 2**20}
    with pytest.raises(PlanError, match="already partitioned"):
        plan_partitions(SLOTS + 1, SLOT_MB, "cpu")


def test_asking_for_a_gpu_gets_what_this_host_has(specs: tuple[SlotSpec, ...]) -> None:
    if not HAS_GPU:
        with pytest.raises(PlanError, match="sees no GPU"):
            plan_partitions(SLOTS, SLOT_MB, "gpu")
    elif DEVICE == "cpu":
        with pytest.raises(PlanError, match="already partitioned"):
            plan_partitions(SLOTS, SLOT_MB, "gpu")
    else:
        assert plan_partitions(SLOTS, SLOT_MB, "gpu") == specs


@pytest.mark.parametrize("slots,mb,device,reason", [
    (SLOTS, 10**9, "cpu", "does not fit this host"),
    (0, SLOT_MB, "cpu", "at least 1"),
])
def test_impossible_plans_are_refused(specs, slots: int, mb: int, device: str, reason: str) -> None:
    with pytest.raises(PlanError, match=reason):
        plan_partitions(slots, mb, device)

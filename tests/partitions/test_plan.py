"""The partition plan: one per process, refused with a clear reason when it cannot fit."""

import pytest

from app.errors import PlanError
from app.partitions import SlotSpec, plan_partitions
from tests.conftest import SLOT_MB, SLOTS


def test_each_slot_knows_index_device_kind_and_limit(specs: tuple[SlotSpec, ...]) -> None:
    assert [s.index for s in specs] == list(range(SLOTS))
    assert [s.device for s in specs] == [f"/device:CPU:{i}" for i in range(SLOTS)]
    assert {s.kind for s in specs} == {"cpu"}
    assert {s.limit_bytes for s in specs} == {SLOT_MB * 2**20}


def test_the_same_plan_again_returns_the_same_slots(specs: tuple[SlotSpec, ...]) -> None:
    assert plan_partitions(SLOTS, SLOT_MB, "cpu") == specs
    assert plan_partitions(SLOTS, SLOT_MB, "auto") == specs  # no GPU here, so auto means CPU


def test_cpu_budget_may_change_but_the_layout_may_not(specs: tuple[SlotSpec, ...]) -> None:
    bigger = plan_partitions(SLOTS, 2 * SLOT_MB, "cpu")
    assert [s.device for s in bigger] == [s.device for s in specs]
    assert {s.limit_bytes for s in bigger} == {2 * SLOT_MB * 2**20}
    with pytest.raises(PlanError, match="already partitioned"):
        plan_partitions(SLOTS + 1, SLOT_MB, "cpu")


@pytest.mark.parametrize("slots,mb,device,reason", [
    (SLOTS, 10**9, "cpu", "does not fit this host"),
    (SLOTS, SLOT_MB, "gpu", "no GPU"),
    (0, SLOT_MB, "cpu", "at least 1"),
])
def test_impossible_plans_are_refused(specs, slots: int, mb: int, device: str, reason: str) -> None:
    with pytest.raises(PlanError, match=reason):
        plan_partitions(slots, mb, device)

"""Control-flow tests: no GPU measured. The GPU branch of ``plan_partitions`` driven through a stand-in backend.

No GPU is reachable from this project's CI, so these tests check what the planner does with a backend's answers
(naming, ownership, the per-GPU fit check with headroom, the start-up log line), not what a GPU answers. The real
backend is exercised on GPU hosts by ``test_gpu_real.py`` (``@pytest.mark.gpu``).
"""

import logging

import pytest

from app.errors import PlanError
from app.partitions import DEFAULT_GPU_HEADROOM_MB, plan_partitions
from tests.partitions.fake_devices import MIB, FakeDevices, gpu


def test_control_flow_two_gpus_by_four_slots_are_named_in_order_and_owned_by_their_gpu() -> None:
    devices = FakeDevices([gpu(0, 40960), gpu(1, 40960)])
    specs = plan_partitions(4, 1024, "gpu", backend=devices)
    assert [s.device for s in specs] == [f"/device:GPU:{i}" for i in range(8)]
    assert [s.index for s in specs] == list(range(8))
    assert [s.physical for s in specs] == ["/physical_device:GPU:0"] * 4 + ["/physical_device:GPU:1"] * 4
    assert {s.kind for s in specs} == {"gpu"} and {s.limit_bytes for s in specs} == {1024 * MIB}
    assert devices.configured == {"/physical_device:GPU:0": [1024] * 4, "/physical_device:GPU:1": [1024] * 4}
    assert not devices.hidden
    assert plan_partitions(4, 1024, "auto", backend=devices) == specs  # auto means GPU when there is one
    with pytest.raises(PlanError, match="already partitioned"):
        plan_partitions(4, 2048, "gpu", backend=devices)  # on a GPU the limit is the layout: fixed once applied


@pytest.mark.parametrize("slots,mb,headroom,fits", [
    (4, 7680, 512, True),  # 4 x 7680 + 512 = 31232 MiB: exactly GPU 1's total
    (4, 7681, 512, False),
    (4, 7808, 0, True),  # the same card holds 4 x 7808 MiB only without headroom
    (4, 7808, DEFAULT_GPU_HEADROOM_MB, False),
])
def test_control_flow_each_gpu_must_hold_its_slots_plus_headroom(slots: int, mb: int, headroom: int,
                                                                 fits: bool) -> None:
    devices = FakeDevices([gpu(0, 40960), gpu(1, 31232, "NVIDIA V100-SXM2-32GB")])
    if fits:
        assert len(plan_partitions(slots, mb, "gpu", headroom, backend=devices)) == 2 * slots
        return
    with pytest.raises(PlanError) as refused:
        plan_partitions(slots, mb, "gpu", headroom, backend=devices)
    message = str(refused.value)
    assert "\n" not in message and "does not fit GPU 1 (NVIDIA V100-SXM2-32GB, 31232 MiB)" in message
    assert f"+ {headroom} MiB headroom = {slots * mb + headroom} MiB" in message and "--gpu-headroom-mb" in message
    assert devices.configured == {} and devices.layout is None and not devices.started  # nothing applied


def test_control_flow_an_unknown_total_leaves_the_check_to_tensorflow(caplog: pytest.LogCaptureFixture) -> None:
    devices = FakeDevices([gpu(0, None)])
    with caplog.at_level(logging.WARNING, "slotserve.partitions"):
        assert len(plan_partitions(2, 10**6, "gpu", backend=devices)) == 2
    assert any("total memory of GPU 0 is unknown" in r.getMessage() for r in caplog.records)


def test_control_flow_a_plan_the_driver_refuses_is_a_one_line_plan_error() -> None:
    devices = FakeDevices([gpu(0, 40960)], refuse_plan="CUDA_ERROR_OUT_OF_MEMORY: out of memory\nmore detail")
    with pytest.raises(PlanError, match="GPU driver refused the slot plan: CUDA_ERROR_OUT_OF_MEMORY") as refused:
        plan_partitions(2, 1024, "gpu", backend=devices)
    assert "\n" not in str(refused.value)


def test_control_flow_asking_for_a_gpu_without_one_is_refused() -> None:
    with pytest.raises(PlanError, match="sees no GPU"):
        plan_partitions(2, 16, "gpu", backend=FakeDevices([]))


def test_control_flow_a_cpu_plan_on_a_gpu_host_keeps_tensorflow_off_the_gpus() -> None:
    devices = FakeDevices([gpu(0, 40960)])
    specs = plan_partitions(3, 16, "cpu", backend=devices)
    assert devices.hidden and [s.device for s in specs] == [f"/device:CPU:{i}" for i in range(3)]
    assert devices.configured == {"/physical_device:CPU:0": [None] * 3}
    assert {s.physical for s in specs} == {"/physical_device:CPU:0"}
    with pytest.raises(PlanError, match="already partitioned"):
        plan_partitions(3, 16, "auto", backend=devices)  # auto on a GPU host means the GPU: another plan


def test_control_flow_the_cpu_plan_on_a_cpu_host_hides_nothing() -> None:
    devices = FakeDevices([])
    assert len(plan_partitions(2, 16, "auto", backend=devices)) == 2 and not devices.hidden


def test_control_flow_the_applied_plan_is_logged_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    devices = FakeDevices([gpu(0, 40960, uuid="GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77"),
                           gpu(1, 40960, uuid="GPU-0a1b2c3d-0000-1111-2222-333344445555")])
    with caplog.at_level(logging.INFO, "slotserve.partitions"):
        plan_partitions(4, 1024, "gpu", backend=devices)
        plan_partitions(4, 1024, "gpu", backend=devices)  # the same plan again is not logged again
    lines = [r.getMessage() for r in caplog.records if r.name == "slotserve.partitions"]
    assert len(lines) == 1 and "\n" not in lines[0]
    line = lines[0]
    assert line.startswith("slot plan: device=gpu gpus=2 [GPU:0 NVIDIA A100-SXM4-40GB GPU-5d5ba0d6-d33d-2b2c-")
    assert "GPU:1 NVIDIA A100-SXM4-40GB GPU-0a1b2c3d-0000-1111-2222-333344445555 40960 MiB]" in line
    assert "slots_per_gpu=4 slot_mib=1024 headroom_mib=512 slots_total=8" in line


@pytest.mark.parametrize("slots,mb,headroom,reason", [
    (0, 16, 512, "at least 1"),
    (2, 0, 512, "at least 1"),
    (2, 16, -1, "cannot be negative"),
])
def test_control_flow_nonsense_plans_are_refused_before_anything_is_applied(slots: int, mb: int, headroom: int,
                                                                           reason: str) -> None:
    devices = FakeDevices([gpu(0, 40960)])
    with pytest.raises(PlanError, match=reason):
        plan_partitions(slots, mb, "gpu", headroom, backend=devices)
    assert devices.configured == {} and not devices.started

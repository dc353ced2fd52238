"""Which GPU is which: ``CUDA_VISIBLE_DEVICES`` entries (indexes, GPU- UUIDs, MIG- instances) and TensorFlow's
GPUs paired with CUDA's visible devices. Pure functions over device lists: the inputs are written here, in the form
the CUDA driver reports them (``app.partitions.cuda``), which this host has none of."""

import pytest
import tensorflow as tf

from app.partitions.cuda import cuda_devices
from app.partitions.visible import CudaDevice, check_visible, format_uuid, match_devices, visible_entries

A100 = "NVIDIA A100-SXM4-40GB"
T4 = "Tesla T4"
MIG_1G = "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
U0 = "GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77"
U1 = "GPU-0a1b2c3d-0000-1111-2222-333344445555"
M0 = "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f"


def dev(ordinal: int, name: str, uuid: str, total_mb: int) -> CudaDevice:
    return CudaDevice(ordinal, name, uuid, total_mb)


def test_uuids_are_written_as_nvidia_smi_writes_them() -> None:
    raw = bytes.fromhex("5d5ba0d6d33d2b2c524d9e3d8d2b8a77")
    assert format_uuid(raw, mig=False) == U0
    assert format_uuid(bytes.fromhex("c6d4f1ef42e45de391c745d71c87eb3f"), mig=True) == M0


@pytest.mark.parametrize("value,entries", [
    (None, None), ("", []), ("0", ["0"]), ("1, 0", ["1", "0"]), (f"{U1},{M0}", [U1, M0]),
])
def test_the_variable_splits_into_entries(value: str | None, entries: list[str] | None) -> None:
    assert visible_entries(value) == entries


@pytest.mark.parametrize("value,devices", [
    (None, [dev(0, A100, U0, 40960), dev(1, A100, U1, 40960)]),  # unset: everything visible, nothing to check
    ("1,0", [dev(0, A100, U1, 40960), dev(1, A100, U0, 40960)]),  # indexes: CUDA renumbered them, in entry order
    ("GPU-0a1b2c3d,GPU-5d5ba0d6-d33d", [dev(0, A100, U1, 40960), dev(1, A100, U0, 40960)]),  # UUID prefixes
    (f"{M0}", [dev(0, MIG_1G, M0, 4864)]),  # a MIG instance, with its own memory
    ("MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0", [dev(0, MIG_1G, M0, 4864)]),  # legacy MIG form
    ("0,GPU-0A1B2C3D", [dev(0, A100, U0, 40960), dev(1, A100, U1, 40960)]),  # UUIDs compare case-blind
])
def test_entries_cuda_honoured_pass(value: str, devices: list[CudaDevice]) -> None:
    assert check_visible(visible_entries(value), devices) is None


def test_cuda_stops_at_the_first_entry_naming_no_device_and_the_warning_says_which() -> None:
    warning = check_visible(visible_entries("0,GPU-ffffffff,1"), [dev(0, A100, U0, 40960)])
    assert warning is not None and "\n" not in warning
    assert "entry 1 ('GPU-ffffffff') names no device" in warning and "1 device(s) are visible" in warning


def test_an_entry_that_is_not_the_device_cuda_put_there_is_reported() -> None:
    warning = check_visible(visible_entries(f"{U0}"), [dev(0, A100, U1, 40960)])
    assert warning is not None and f"entry 0 ('{U0}') does not match CUDA's device 0 ({U1})" in warning


def test_tensorflow_gpus_pair_with_cuda_devices_in_cuda_order_not_pci_order() -> None:
    # CUDA's default order is fastest first: the A100 is ordinal 0 even when nvidia-smi (PCI order) lists the T4
    # first, so pairing by nvidia-smi's rows would check the A100's plan against the T4's 15 GiB.
    cuda = [dev(0, A100, U0, 40960), dev(1, T4, U1, 15360)]
    assert [d.total_mb for d in match_devices([A100, T4], cuda)] == [40960, 15360]


def test_a_gpu_tensorflow_skips_shifts_the_pairing() -> None:
    # TensorFlow ignores devices below its minimum compute capability; its list is a subsequence of CUDA's
    cuda = [dev(0, "Tesla K80", U1, 11441), dev(1, A100, U0, 40960)]
    assert match_devices([A100], cuda) == [cuda[1]]


def test_mig_instances_pair_with_their_own_memory() -> None:
    cuda = [dev(0, MIG_1G, M0, 4864)]
    assert match_devices([MIG_1G], cuda) == [cuda[0]]


def test_a_gpu_that_cannot_be_paired_gets_no_total_and_neither_do_those_after_it() -> None:
    cuda = [dev(0, A100, U0, 40960), dev(1, A100, U1, 40960)]
    assert match_devices([None, A100], cuda) == [None, None]  # never a guess at another card's memory
    assert match_devices([A100, A100, A100], cuda) == [cuda[0], cuda[1], None]
    assert match_devices([T4], cuda) == [None]


def test_the_driver_inventory_pairs_with_every_gpu_tensorflow_sees() -> None:
    """The real CUDA driver query: none on a host without a GPU driver (this CI's), else every GPU paired."""
    devices = cuda_devices()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        assert not devices
        return
    names = [tf.config.experimental.get_device_details(g).get("device_name") for g in gpus]
    paired = match_devices(names, devices or [])
    assert all(d is not None and d.total_mb > 0 and d.uuid[:4] in ("GPU-", "MIG-") for d in paired), paired

"""Real-GPU tests: the plan applied to a real GPU and a slot's limit enforced by its own allocator.

Marked ``gpu``: skipped on hosts where TensorFlow sees no GPU (this project's CI has none). Each runs in a fresh
Python process, since the session's own plan (logical CPUs) is already applied in this one.
"""

import json
import subprocess
import sys

import pytest

from app.partitions import ALLOCATOR_SLACK

MIB = 1 << 20
SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
from app.errors import PlanError
from app.partitions import default_backend, plan_partitions

specs = plan_partitions(2, 64, "gpu", gpu_headroom_mb=512)
backend = default_backend()
first, second = specs[0].device, specs[1].device
out = {"devices": [s.device for s in specs], "physical": [s.physical for s in specs],
       "gpus": [[g.name, g.model, g.uuid, g.total_mb] for g in backend.physical_devices("gpu")]}
with tf.device(first):
    four = tf.Variable(tf.zeros([MIB // 4], tf.float32))  # 4 MiB
out["four_mib"] = backend.memory_info(first)[0]
with tf.device(first):
    big = tf.Variable(tf.zeros([24 * MIB // 4], tf.float32))  # 28 MiB in a 64 MiB slot (even if the initial
out["after_big"] = backend.memory_info(first)[0]              # value briefly doubles it)
try:
    with tf.device(first):
        more = tf.Variable(tf.zeros([48 * MIB // 4], tf.float32))  # 76 MiB: over the slot's limit
    out["over_limit"] = "allocated"
except (tf.errors.ResourceExhaustedError, tf.errors.InternalError) as exc:
    out["over_limit"] = type(exc).__name__
with tf.device(second):
    other = tf.Variable(tf.zeros([24 * MIB // 4], tf.float32))  # the neighbour slot still has its own 64 MiB
out["second"] = backend.memory_info(second)[0]
try:
    plan_partitions(2, 10**7, "gpu")
except PlanError as exc:
    out["again"] = str(exc)
print(json.dumps(out))
""".replace("MIB", str(MIB))


@pytest.mark.gpu
def test_a_slot_limit_is_enforced_by_its_own_allocator_on_a_real_gpu() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    gpus = len(out["gpus"])
    assert out["devices"] == [f"/device:GPU:{i}" for i in range(2 * gpus)]
    assert out["physical"] == [g[0] for g in out["gpus"] for _ in range(2)]
    assert all(g[3] is not None and g[3] >= 2 * 64 + 512 for g in out["gpus"]), out["gpus"]  # totals were read
    assert 4 * MIB <= out["four_mib"] <= 4 * MIB + ALLOCATOR_SLACK  # the allocator rounds up, a little
    assert 28 * MIB <= out["after_big"] <= 28 * MIB + 2 * ALLOCATOR_SLACK
    assert out["over_limit"] == "ResourceExhaustedError"  # the slot's limit, not the card's, refused it
    assert 24 * MIB <= out["second"] <= 24 * MIB + ALLOCATOR_SLACK
    assert "already partitioned" in out["again"]

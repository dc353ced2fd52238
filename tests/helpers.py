"""Small helpers shared by the tests: request bodies from references, output and memory-figure comparison."""

import os
from typing import Any

import numpy as np
import tensorflow as tf

from app.partitions import ALLOCATOR_SLACK
from tests.models import Reference

# Where the suite's plan lives: logical CPUs unless SLOTSERVE_TEST_DEVICE=gpu (a GPU host's own run).
DEVICE = os.environ.get("SLOTSERVE_TEST_DEVICE", "cpu")
HAS_GPU = bool(tf.config.list_physical_devices("GPU"))  # physical: a CPU plan hides GPUs but does not remove them
# Outputs against Keras's own. TF32 is off in every test process (conftest), so a GPU computes in float32 too, only
# summing in another order than the CPU that made the references (servers started by tests use the host's GPU).
TOLERANCE = 1e-4 if HAS_GPU else 1e-5


def assert_bytes(got: int, expected: int, kind: str = DEVICE, tensors: int = 16) -> None:
    """A slot's memory figure: exact on a CPU (the registry's own byte count); on a GPU its BFC allocator rounds each
    of the model's ``tensors`` up (a 4 MiB variable reads 4,194,560 bytes), never down."""
    if kind == "cpu":
        assert got == expected, f"{got} bytes, expected exactly {expected}"
        return
    assert expected <= got <= expected + tensors * ALLOCATOR_SLACK, (
        f"{got} bytes, expected {expected} plus at most {tensors} x {ALLOCATOR_SLACK} of allocator rounding")


def rows_body(ref: Reference, rows: slice = slice(None)) -> dict[str, Any]:
    """``{"instances": [...]}``: rows for one input, objects by input name for several."""
    if len(ref.inputs) == 1:
        return {"instances": next(iter(ref.inputs.values()))[rows].tolist()}
    names = list(ref.inputs)
    count = len(ref.inputs[names[0]][rows])
    return {"instances": [{n: ref.inputs[n][rows][i].tolist() for n in names} for i in range(count)]}


def columns_body(ref: Reference, rows: slice = slice(None)) -> dict[str, Any]:
    """``{"inputs": ...}``: a list for one input, an object by name for several."""
    if len(ref.inputs) == 1:
        return {"inputs": next(iter(ref.inputs.values()))[rows].tolist()}
    return {"inputs": {n: v[rows].tolist() for n, v in ref.inputs.items()}}


def assert_rows_match(body: dict[str, Any], ref: Reference, rows: slice = slice(None)) -> None:
    predictions = body["predictions"]
    if len(ref.outputs) == 1:
        expected = next(iter(ref.outputs.values()))[rows]
        np.testing.assert_allclose(np.asarray(predictions), expected, atol=TOLERANCE, rtol=0)
        return
    for name, expected in ref.outputs.items():
        got = np.asarray([row[name] for row in predictions])
        np.testing.assert_allclose(got, expected[rows], atol=TOLERANCE, rtol=0)


def assert_columns_match(body: dict[str, Any], ref: Reference, rows: slice = slice(None)) -> None:
    outputs = body["outputs"]
    if len(ref.outputs) == 1:
        expected = next(iter(ref.outputs.values()))[rows]
        np.testing.assert_allclose(np.asarray(outputs), expected, atol=TOLERANCE, rtol=0)
        return
    assert set(outputs) == set(ref.outputs)
    for name, expected in ref.outputs.items():
        np.testing.assert_allclose(np.asarray(outputs[name]), expected[rows], atol=TOLERANCE, rtol=0)

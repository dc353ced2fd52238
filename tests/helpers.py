"""Small helpers shared by the HTTP tests: request bodies from references, and output comparison."""

from typing import Any

import numpy as np

from tests.models import Reference

TOLERANCE = 1e-5


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

"""Tensor descriptions and request payloads: JSON values -> validated numpy arrays, arrays -> JSON values.

Validation is cheap and shape-based (no per-element pydantic work), and it happens before any TensorFlow work, so
a bad request never reaches a slot's thread.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidInput, InvalidRequest, PayloadTooLarge


@dataclass(frozen=True)
class TensorInfo:
    """Name, dtype and shape of one model input or output; ``None`` marks a variable dimension."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("None" if d is None else str(d) for d in self.shape)
        return f"'{self.name}' {self.dtype.name}[{dims}]"


def parse_request(body: Any, inputs: list[TensorInfo], max_rows: int) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays by input name from ``{"instances": [...]}`` or ``{"inputs": ...}``; also whether it was columnar."""
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object with 'instances' (rows) or 'inputs' (columns).")
    keys = set(body) & {"instances", "inputs"}
    if len(keys) != 1 or set(body) - {"instances", "inputs", "signature_name"}:
        raise InvalidRequest("The body must have exactly one of 'instances' (rows) or 'inputs' (columns).")
    columnar = "inputs" in keys
    raw = _columns(body["inputs"], inputs) if columnar else _rows(body["instances"], inputs)
    arrays = {info.name: to_array(raw[info.name], info, max_rows) for info in inputs}
    counts = {len(a) for a in arrays.values()}
    if len(counts) > 1:
        raise InvalidInput(f"Every input must have the same number of rows; got {sorted(counts)}.")
    return arrays, columnar


def _columns(value: Any, inputs: list[TensorInfo]) -> dict[str, Any]:
    if len(inputs) == 1 and not isinstance(value, dict):
        return {inputs[0].name: value}
    if not isinstance(value, dict):
        raise InvalidInput(f"This model has several inputs; 'inputs' must be an object by name: {_expected(inputs)}.")
    return _by_name(value, inputs)


def _rows(value: Any, inputs: list[TensorInfo]) -> dict[str, Any]:
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"'instances' must be a non-empty list of rows; expected rows of {_expected(inputs)}.")
    if len(inputs) == 1 and not isinstance(value[0], dict):
        return {inputs[0].name: value}
    if not all(isinstance(row, dict) for row in value):
        raise InvalidInput(f"This model has several inputs; each instance must be an object by name: {_expected(inputs)}.")
    columns = {info.name: [] for info in inputs}
    for row in value:
        for name, cell in _by_name(row, inputs).items():
            columns[name].append(cell)
    return columns


def _by_name(value: dict, inputs: list[TensorInfo]) -> dict[str, Any]:
    names = {info.name for info in inputs}
    if set(value) != names:
        raise InvalidInput(f"Expected inputs {sorted(names)}, got {sorted(value)}: {_expected(inputs)}.")
    return value


def to_array(value: Any, info: TensorInfo, max_rows: int) -> np.ndarray:
    """One input as an array of the model's dtype; ``InvalidInput`` unless shape and values fit losslessly."""
    if isinstance(value, list) and len(value) > max_rows:
        raise PayloadTooLarge(f"A request may carry at most {max_rows} rows; got {len(value)}.", max_rows=max_rows)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise InvalidInput(f"Input '{info.name}' is ragged or not numeric; expected {info.describe()}.") from None
    return check_array(array, info, max_rows)


def check_array(array: np.ndarray, info: TensorInfo, max_rows: int) -> np.ndarray:
    """``array`` checked against ``info`` (batch size, shape, lossless dtype); what every protocol decodes into."""
    if array.ndim and len(array) > max_rows:
        raise PayloadTooLarge(f"A request may carry at most {max_rows} rows; got {len(array)}.", max_rows=max_rows)
    if array.ndim == 0 or len(array) == 0:
        raise InvalidInput(f"Input '{info.name}' must be a non-empty batch; expected {info.describe()}.")
    if array.ndim != len(info.shape) or any(d is not None and d != a for d, a in zip(info.shape, array.shape)):
        raise InvalidInput(
            f"Input '{info.name}' has shape {list(array.shape)}; expected {info.describe()} (first dimension is the batch)."
        )
    return cast(array, info)


def cast(array: np.ndarray, info: TensorInfo) -> np.ndarray:
    """``array`` as ``info.dtype`` when no value changes; ``InvalidInput`` otherwise."""
    target = info.dtype
    if array.dtype == target:
        return array
    kind = array.dtype.kind
    if kind not in "biuf":
        raise InvalidInput(f"Input '{info.name}' holds {array.dtype.name} values; expected numbers for {info.describe()}.")
    if target.kind == "f" or (target.kind in "iu" and kind in "biu") or (target.kind == "b" and kind == "b"):
        with np.errstate(over="ignore", invalid="ignore"):
            converted = array.astype(target)
        if target.kind == "f" and not np.isfinite(converted).all():
            raise InvalidInput(f"Input '{info.name}' has values that are not finite in {info.describe()}.")
        if kind in "iu" and target.kind in "iu" and not np.array_equal(converted, array):
            raise InvalidInput(f"Input '{info.name}' has values out of range for {info.describe()}.")
        return converted
    if target.kind in "iu" and kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            converted = array.astype(target)
        if np.array_equal(converted, array):
            return converted
    raise InvalidInput(f"Input '{info.name}' holds {array.dtype.name} values that {info.describe()} cannot hold exactly.")


def format_response(outputs: dict[str, np.ndarray], infos: list[TensorInfo], columnar: bool) -> dict[str, Any]:
    """``{"outputs": ...}`` for a columnar request, ``{"predictions": [...]}`` (one entry per row) otherwise."""
    if columnar:
        if len(infos) == 1:
            return {"outputs": outputs[infos[0].name]}
        return {"outputs": {info.name: outputs[info.name] for info in infos}}
    if len(infos) == 1:
        return {"predictions": outputs[infos[0].name]}
    rows = len(next(iter(outputs.values())))
    return {"predictions": [{info.name: outputs[info.name][i] for info in infos} for i in range(rows)]}


def _expected(inputs: list[TensorInfo]) -> str:
    return ", ".join(info.describe() for info in inputs)

"""Tensor descriptions and request payloads: JSON values -> validated numpy arrays, arrays -> JSON values.

Validation is cheap and shape-based (no per-element pydantic work), and it happens before any TensorFlow work, so
a bad request never reaches a slot's thread.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.errors import InvalidInput, InvalidRequest, OutputNotFinite, PayloadTooLarge
from app.registry.lean_json import HugeInteger, NotRegular, NumericText


@dataclass(frozen=True)
class TensorInfo:
    """Name, dtype and shape of one model input or output; ``None`` marks a variable dimension."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("None" if d is None else str(d) for d in self.shape)
        return f"'{self.name}' {self.dtype.name}[{dims}]"


def parse_request(body: Any, inputs: list[TensorInfo], max_rows: int,
                  extra: frozenset[str] | set[str] = frozenset()) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays by input name from ``{"instances": [...]}`` or ``{"inputs": ...}``; also whether it was columnar.

    ``extra`` names other keys the body may have (TF Serving's ``signature_name``)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object with 'instances' (rows) or 'inputs' (columns).")
    keys = set(body) & {"instances", "inputs"}
    if len(keys) != 1 or set(body) - {"instances", "inputs", *extra}:
        allowed = f", and optionally {', '.join(sorted(extra))}" if extra else ", and nothing else"
        raise InvalidRequest(f"The body must have exactly one of 'instances' (rows) or 'inputs' (columns){allowed}.")
    columnar = "inputs" in keys
    raw = _columns(body["inputs"], inputs) if columnar else _rows(body["instances"], inputs)
    arrays = {info.name: to_array(raw[info.name], info, max_rows) for info in inputs}
    counts = {len(a) for a in arrays.values()}
    if len(counts) > 1:
        raise InvalidInput(f"Every input must have the same number of rows; got {sorted(counts)}.")
    return arrays, columnar


def _columns(value: Any, inputs: list[TensorInfo]) -> dict[str, Any]:
    if len(inputs) == 1 and not isinstance(value, dict):  # a list, or a big array still in text
        return {inputs[0].name: value}
    if not isinstance(value, dict):
        raise InvalidInput(f"This model has several inputs; 'inputs' must be an object by name: {_expected(inputs)}.")
    return _by_name(value, inputs)


def _rows(value: Any, inputs: list[TensorInfo]) -> dict[str, Any]:
    if isinstance(value, NumericText) and len(inputs) == 1:  # a big regular array of rows, still text
        return {inputs[0].name: value}
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"'instances' must be a non-empty list of rows; expected rows of {_expected(inputs)}.")
    if len(inputs) == 1 and not isinstance(value[0], dict):
        return {inputs[0].name: value}
    if not all(isinstance(row, dict) for row in value):
        raise InvalidInput(f"This model has several inputs; each instance must be an object by name: {_expected(inputs)}.")
    columns = {info.name: [] for info in inputs}
    texts = False
    for row in value:
        for name, cell in _by_name(row, inputs).items():
            columns[name].append(cell)
            texts = texts or isinstance(cell, NumericText)
    if texts:  # rows whose cells were big enough to stay text: parse them as numpy would read them
        for cells in columns.values():
            cells[:] = [_natural(cell) if isinstance(cell, NumericText) else cell for cell in cells]
    return columns


def _by_name(value: dict, inputs: list[TensorInfo]) -> dict[str, Any]:
    names = {info.name for info in inputs}
    if set(value) != names:
        raise InvalidInput(f"Expected inputs {sorted(names)}, got {sorted(value)}: {_expected(inputs)}.")
    return value


def to_array(value: Any, info: TensorInfo, max_rows: int) -> np.ndarray:
    """One input as an array of the model's dtype; ``InvalidInput`` unless shape and values fit losslessly.

    A big array still in text (``NumericText``) has its shape checked before any number is parsed, then is parsed
    straight into the model's dtype.
    """
    if isinstance(value, NumericText):
        check_shape(value.shape, info, max_rows)
        return materialize(value, info.dtype, lambda chunk: cast(chunk, info))
    if isinstance(value, list) and len(value) > max_rows:
        raise PayloadTooLarge(f"A request may carry at most {max_rows} rows; got {len(value)}.", max_rows=max_rows)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"Input '{info.name}' is ragged or not numeric; expected {info.describe()}.") from None
    return check_array(array, info, max_rows)


def check_array(array: np.ndarray, info: TensorInfo, max_rows: int) -> np.ndarray:
    """``array`` checked against ``info`` (batch size, shape, lossless dtype); what every protocol decodes into."""
    check_shape(array.shape, info, max_rows)
    return cast(array, info)


def check_shape(shape: tuple[int, ...], info: TensorInfo, max_rows: int) -> None:
    """A batch of ``shape`` fits ``info``: at most ``max_rows`` rows, not empty, every fixed dimension equal."""
    if shape and shape[0] > max_rows:
        raise PayloadTooLarge(f"A request may carry at most {max_rows} rows; got {shape[0]}.", max_rows=max_rows)
    if not shape or shape[0] == 0:
        raise InvalidInput(f"Input '{info.name}' must be a non-empty batch; expected {info.describe()}.")
    if len(shape) != len(info.shape) or any(d is not None and d != a for d, a in zip(info.shape, shape)):
        raise InvalidInput(
            f"Input '{info.name}' has shape {list(shape)}; expected {info.describe()} (first dimension is the batch)."
        )


def materialize(text: NumericText, dtype: np.dtype, convert: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``text`` parsed chunk by chunk into one array of ``dtype`` (``convert`` checks and casts each chunk)."""
    try:
        return text.materialize(dtype, convert)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body is not valid JSON.") from None
    except NotRegular:
        raise InvalidInput("An input's numbers do not fill its shape.") from None
    except HugeInteger as exc:
        raise InvalidInput(f"{exc}.") from None


def _natural(text: NumericText) -> np.ndarray:
    """``text`` as numpy would read its list: int64 for integers, float64 once any number is a float."""
    return materialize(text, np.dtype(np.float64 if text.floats else np.int64), lambda chunk: chunk)


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
        if kind in "iu" and not _round_trips(converted, array):  # 16777217 into float32, 300 into int8...
            raise InvalidInput(f"Input '{info.name}' has integers that {info.describe()} cannot hold exactly.")
        return converted
    if target.kind in "iu" and kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            converted = array.astype(target)
        if np.array_equal(converted, array):
            return converted
    raise InvalidInput(f"Input '{info.name}' holds {array.dtype.name} values that {info.describe()} cannot hold exactly.")


def _round_trips(converted: np.ndarray, original: np.ndarray) -> bool:
    """Whether ``converted`` holds exactly ``original``'s integers (floats compared back as integers)."""
    if converted.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            limit = np.iinfo(original.dtype).max
            back = converted.astype(original.dtype)
        # a float at or past the integer type's maximum cannot be cast back: no integer there is exact
        return bool(np.array_equal(back, original) and not (converted >= float(limit)).any())
    return bool(np.array_equal(converted, original))


def check_finite(name: str, array: np.ndarray) -> None:
    """Refuse an output JSON cannot carry: NaN or an infinity (the model overflowed, or produced NaN)."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise OutputNotFinite(f"The model's output '{name}' holds values that are not finite (NaN or infinity) for "
                              "this input; JSON cannot carry them (V2 binary outputs can).")


def format_response(outputs: dict[str, np.ndarray], infos: list[TensorInfo], columnar: bool) -> dict[str, Any]:
    """``{"outputs": ...}`` for a columnar request, ``{"predictions": [...]}`` (one entry per row) otherwise.

    Refuses (``OutputNotFinite``) outputs that JSON cannot carry."""
    for info in infos:
        check_finite(info.name, outputs[info.name])
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


def is_large(body: Any, rows: int = 256) -> bool:
    """Cheap look at a request's first value: many rows or wide rows go to a worker thread for conversion."""
    if not isinstance(body, dict):
        return False
    value = body.get("instances", body.get("inputs"))
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
    if isinstance(value, NumericText) or (isinstance(value, list) and value and isinstance(value[0], dict)
                                          and any(isinstance(v, NumericText) for v in value[0].values())):
        return True
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    width = len(first) if isinstance(first, list | dict) else 1
    return len(value) * max(width, 1) > rows * 64

"""Open Inference Protocol (KServe V2 / Triton) tensors: request bodies -> numpy arrays, arrays -> response bodies.

Covers JSON tensors (flat or nested ``data``) and the binary tensor data extension both ways (a JSON header of
``Inference-Header-Content-Length`` bytes, then each binary tensor's raw little-endian, row-major bytes in order).
Numpy and orjson only: the model's own tensors arrive as ``ModelView`` descriptions, never as TensorFlow objects.
"""

from dataclasses import dataclass, field
from math import prod
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from app.errors import InvalidInput, InvalidRequest
from app.registry.lean_json import NumericText
from app.registry.tensors import TensorInfo, check_array, check_finite, materialize

if TYPE_CHECKING:  # the registry package imports TensorFlow; the codec needs only the type
    from app.registry import ModelView

# V2 datatype -> numpy dtype, for the datatypes a numeric model can take. BYTES is refused, never decoded.
DATATYPES: dict[str, np.dtype] = {name: np.dtype(dt) for name, dt in {
    "BOOL": "bool", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "UINT8": "uint8",
    "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64", "FP16": "float16", "FP32": "float32",
    "FP64": "float64",
}.items()}
_NAMES = {dt.name: name for name, dt in DATATYPES.items()} | {"bfloat16": "BF16"}
PLATFORMS = {"keras": "tensorflow_keras", "h5": "tensorflow_keras", "savedmodel": "tensorflow_savedmodel"}
_ORJSON = orjson.OPT_SERIALIZE_NUMPY


def datatype(dtype: np.dtype) -> str:
    """The V2 name of a numpy dtype (``FP32``...); anything non-numeric is ``BYTES``, as Triton names strings."""
    return _NAMES.get(np.dtype(dtype).name, "BYTES")


def shape(info: TensorInfo) -> list[int]:
    """A tensor's V2 shape: the batch dimension and every other variable dimension are -1."""
    return [-1 if d is None else d for d in info.shape]


def served_version(version: int | None) -> str:
    """The V2 version of a model: a versioned SavedModel's own number, else "1"."""
    return "1" if version is None else str(version)


def model_metadata(view: "ModelView") -> dict[str, Any]:
    """V2 model metadata: the loaded version; inputs and outputs with V2 datatypes and shapes."""
    tensors = [[{"name": t.name, "datatype": datatype(t.dtype), "shape": shape(t)} for t in infos]
               for infos in (view.inputs, view.outputs)]
    return {"name": view.name, "versions": [served_version(view.version)], "platform": PLATFORMS.get(view.format, f"tensorflow_{view.format}"),
            "inputs": tensors[0], "outputs": tensors[1]}


@dataclass(frozen=True)
class InputTensor:
    """One request input: its declared shape and datatype, and its values (JSON ``data`` or raw bytes)."""

    name: str
    shape: tuple[int, ...]
    datatype: str
    data: Any = None
    raw: memoryview | None = None


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: inputs in order, requested outputs (name -> binary?) and the request id."""

    inputs: list[InputTensor]
    outputs: dict[str, bool] | None  # None: every output of the model
    binary_output: bool  # request-level ``binary_data_output``: the default for outputs that do not say
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def split_body(body: bytes | bytearray, header_length: str | None) -> tuple[bytes | bytearray, memoryview]:
    """The JSON header and the binary tensor data after it (``Inference-Header-Content-Length`` bytes of JSON)."""
    if header_length is None:
        return body, memoryview(b"")
    if not (header_length.isascii() and header_length.isdigit()) or len(header_length) > 19 \
            or int(header_length) > len(body):
        raise InvalidRequest("Inference-Header-Content-Length must be a number of bytes no larger than the "
                             f"body ({len(body)} bytes).")
    length = int(header_length)
    return bytes(memoryview(body)[:length]), memoryview(body)[length:]


def parse_infer(request: Any, rest: memoryview) -> InferRequest:
    """Check the structure of a decoded infer request (not its tensors); ``rest`` is the binary data after it."""
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise InvalidRequest("The inference request must be a JSON object with a non-empty 'inputs' list.")
    params = _object(request.get("parameters"), "parameters")
    inputs, offset = [], 0
    for item in request["inputs"]:
        tensor, offset = _input(item, rest, offset)
        inputs.append(tensor)
    if offset != len(rest):
        raise InvalidRequest(f"The body has {len(rest) - offset} bytes of binary data that no input's "
                             "'binary_data_size' accounts for.")
    if len({t.name for t in inputs}) != len(inputs):
        raise InvalidRequest("Each input may appear only once in 'inputs'.")
    outputs = None
    if request.get("outputs") is not None:
        if not isinstance(request["outputs"], list):
            raise InvalidRequest("'outputs' must be a list of objects with a 'name'.")
        outputs = {}
        for item in request["outputs"]:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidRequest("Each entry of 'outputs' must be an object with a string 'name'.")
            binary = _object(item.get("parameters"), f"outputs '{item['name']}' parameters").get("binary_data")
            outputs[item["name"]] = bool(params.get("binary_data_output")) if binary is None else bool(binary)
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest("The request 'id' must be a string.")
    return InferRequest(inputs, outputs, bool(params.get("binary_data_output")), request_id, params)


def _input(item: Any, rest: memoryview, offset: int) -> tuple[InputTensor, int]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidRequest("Each entry of 'inputs' must be an object with a string 'name'.")
    name, dims, dtype = item["name"], item.get("shape"), item.get("datatype")
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        raise InvalidRequest(f"Input '{name}' needs a 'shape': a list of non-negative integers.")
    if not isinstance(dtype, str):
        raise InvalidRequest(f"Input '{name}' needs a 'datatype': one of {', '.join(DATATYPES)}.")
    if dtype == "BYTES":
        raise InvalidInput(f"Input '{name}' is BYTES; this server's models take numeric tensors only "
                           f"({', '.join(DATATYPES)}).")
    if dtype not in DATATYPES:
        raise InvalidRequest(f"Input '{name}' has datatype {dtype!r}; expected one of {', '.join(DATATYPES)}.")
    size = _object(item.get("parameters"), f"input '{name}' parameters").get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise InvalidRequest(f"Input '{name}' has neither 'data' nor a 'binary_data_size' parameter.")
        return InputTensor(name, tuple(dims), dtype, data=item["data"]), offset
    if "data" in item:
        raise InvalidRequest(f"Input '{name}' has both 'data' and binary data; send one of them.")
    if not isinstance(size, int) or size < 0 or offset + size > len(rest):
        raise InvalidRequest(f"Input '{name}' has binary_data_size {size!r} but only {len(rest) - offset} bytes of "
                             "binary data remain in the body.")
    return InputTensor(name, tuple(dims), dtype, raw=rest[offset:offset + size]), offset + size


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{what}' must be a JSON object.")
    return value


def decode_inputs(request: InferRequest, view: "ModelView", max_rows: int) -> dict[str, np.ndarray]:
    """Arrays by the model's input names, each checked against the model (shape, batch, lossless dtype).

    Also checks the requested outputs, so a bad request never reaches the model.
    """
    given = {t.name: t for t in request.inputs}
    expected = {info.name for info in view.inputs}
    if set(given) != expected:
        raise InvalidInput(f"Model '{view.name}' takes inputs {sorted(expected)}; the request has {sorted(given)}.")
    if request.outputs is not None:
        unknown = set(request.outputs) - {info.name for info in view.outputs}
        if unknown:
            raise InvalidRequest(f"Model '{view.name}' has no output {sorted(unknown)}; its outputs are "
                                 f"{[info.name for info in view.outputs]}.")
    arrays = {info.name: _exactly(_array(given[info.name]), info, max_rows) for info in view.inputs}
    rows = {len(a) for a in arrays.values()}
    if len(rows) > 1:
        raise InvalidInput(f"Every input must have the same batch size (first dimension); got {sorted(rows)}.")
    return arrays


def _array(tensor: InputTensor) -> np.ndarray:
    """The tensor as an array of its declared datatype and shape; refused if its values do not fit either."""
    dtype, count = DATATYPES[tensor.datatype], prod(tensor.shape)
    if tensor.raw is not None:
        if len(tensor.raw) != count * dtype.itemsize:
            raise InvalidInput(f"Input '{tensor.name}' has {len(tensor.raw)} bytes of binary data; shape "
                               f"{list(tensor.shape)} of {tensor.datatype} needs {count * dtype.itemsize}.")
        array = np.frombuffer(tensor.raw, dtype.newbyteorder("<")).astype(dtype, copy=False)
        if dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(f"Input '{tensor.name}' has values that are not finite (NaN or infinity).")
        return array.reshape(tensor.shape)
    if isinstance(tensor.data, NumericText):
        if tensor.data.size != count:
            raise InvalidInput(f"Input '{tensor.name}' has {tensor.data.size} values; shape {list(tensor.shape)} "
                               f"needs {count}.")
        return materialize(tensor.data, dtype, lambda chunk: _typed(chunk, dtype, tensor)).reshape(tensor.shape)
    try:
        values = np.asarray(tensor.data)
    except (ValueError, TypeError):
        values = np.asarray([None])  # ragged nesting: refused below with the non-numeric message
    if values.dtype.kind not in "biuf":
        raise InvalidInput(f"Input '{tensor.name}' data must be numbers (flat or nested evenly) for {tensor.datatype}.")
    if values.size != count:
        raise InvalidInput(f"Input '{tensor.name}' has {values.size} values; shape {list(tensor.shape)} "
                           f"needs {count}.")
    return _typed(values, dtype, tensor).reshape(tensor.shape)


def _typed(values: np.ndarray, dtype: np.dtype, tensor: InputTensor) -> np.ndarray:
    """``values`` as ``dtype``; refused unless they are numbers that fit it exactly (floats may round: JSON
    numbers are decimal approximations) and finite."""
    if values.dtype.kind not in "biuf":
        raise InvalidInput(f"Input '{tensor.name}' data must be numbers (flat or nested evenly) for {tensor.datatype}.")
    with np.errstate(over="ignore", invalid="ignore"):
        typed = values.astype(dtype)
    inexact = not np.array_equal(typed, values) if dtype.kind in "biu" else not np.isfinite(typed).all()
    if inexact:
        raise InvalidInput(f"Input '{tensor.name}' has values that {tensor.datatype} cannot hold exactly.")
    return typed


def encode_response(model: str, request: InferRequest, view: "ModelView",
                    outputs: dict[str, np.ndarray]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary output data follows it (else ``None``)."""
    chosen = request.outputs or {info.name: request.binary_output for info in view.outputs}
    tensors, chunks = [], []
    for name, binary in chosen.items():
        array = np.asarray(outputs[name])
        tensor: dict[str, Any] = {"name": name, "datatype": datatype(array.dtype), "shape": list(array.shape)}
        if binary:
            chunk = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            check_finite(name, array)  # JSON has no NaN or infinity (binary data carries them)
            tensor["data"] = np.ascontiguousarray(array).reshape(-1)  # V2 JSON data is flat, row-major
        tensors.append(tensor)
    body: dict[str, Any] = {"model_name": model, "model_version": served_version(view.version)}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = tensors
    header = orjson.dumps(body, option=_ORJSON)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _exactly(array: np.ndarray, info: TensorInfo, max_rows: int) -> np.ndarray:
    """``check_array``, and then a round trip: a V2 tensor declares its datatype, so any value the model's dtype
    changes (INT64 16777217 into FP32, FP64 into FP32, ...) is refused rather than silently rounded."""
    checked = check_array(array, info, max_rows)
    if checked.dtype != array.dtype and not np.array_equal(checked.astype(array.dtype), array):
        raise InvalidInput(f"Input '{info.name}' has {datatype(array.dtype)} values that {info.describe()} cannot "
                           "hold exactly; send them as the model's datatype.")
    return checked

"""A model loaded into a slot and served through one traced ``tf.function`` (never ``model.predict``).

Everything here runs on the slot's own thread, inside ``tf.device(slot device)``.
"""

from typing import Any

import numpy as np
import tensorflow as tf

from app.errors import InvalidInput, ModelInvalid, ModelTooLarge, SlotOutOfMemory, SlotServeError
from app.partitions import collect_garbage
from app.registry.keras_files import load_keras_archive
from app.registry.store import ModelFile
from app.registry.tensors import TensorInfo


class Servable:
    """One loaded model: its input/output descriptions, its variables and its inference function."""

    def __init__(self, name: str, model: Any, device: str) -> None:
        self.name = name
        self.device = device
        self._model = model
        self.inputs = [_info(t.name, t.dtype, t.shape) for t in model.inputs]
        self.output_names = list(model.output_names)
        specs = [tf.TensorSpec((None, *i.shape[1:]), i.dtype, name=i.name) for i in self.inputs]
        names = [i.name for i in self.inputs]
        structure = model.input  # the model's own nesting of its inputs: one tensor, a list or a dict

        def serve(*args: tf.Tensor) -> Any:
            by_name = dict(zip(names, args))
            return model(tf.nest.map_structure(lambda t: by_name[t.name], structure), training=False)

        # The signature fixes one concrete function; calling it directly skips tf.function's dispatch (~40% of a
        # small model's call time).
        with tf.device(device):
            concrete = tf.function(serve, input_signature=specs, autograph=False).get_concrete_function()
        self._fn = concrete
        structured = _named(concrete.structured_outputs, self.output_names)
        self.output_names = list(structured)
        self.outputs = [_info(name, t.dtype, t.shape) for name, t in structured.items()]

    @property
    def variables(self) -> list:
        """The model's TensorFlow variables (the bytes it holds in its slot)."""
        return [v.value if hasattr(v, "value") else v for v in self._model.variables]

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
        """Run the traced function; outputs by name as tensors. Call it on the slot's thread, inside
        ``tf.device(slot device)`` (``Slot.infer`` does): inputs are placed there, the traced ops already are."""
        result = self._fn(*(tf.convert_to_tensor(arrays[i.name]) for i in self.inputs))
        return _named(result, self.output_names)

    def __call__(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on validated arrays; outputs by name as numpy arrays."""
        try:
            return {name: tensor.numpy() for name, tensor in self.run(arrays).items()}
        except tf.errors.ResourceExhaustedError as exc:
            err: SlotServeError = SlotOutOfMemory(
                f"The prediction ran out of this slot's memory: {_first_line(exc.message)}.")
        except tf.errors.InvalidArgumentError as exc:
            err = InvalidInput(f"The model rejected the input: {_first_line(exc.message)}.")
        raise err

    def warm_up(self) -> None:
        """One call with two zero rows: kernel errors surface at load time, and every output must keep the batch
        dimension (requests are batched together and split back by rows)."""
        outputs = self({i.name: np.zeros((2, *(d or 1 for d in i.shape[1:])), i.dtype) for i in self.inputs})
        flat = {name: out.shape for name, out in outputs.items() if out.shape[:1] != (2,)}
        if flat:
            raise ValueError(f"its outputs {flat} do not keep the batch dimension (one row of output per input row)")

    def close(self) -> None:
        """Drop the model and its function; the caller drops this object and collects garbage."""
        self._fn = None
        self._model = None


def load_servable(model_file: ModelFile, device: str, max_file_bytes: int) -> Servable:
    """Load a store file onto ``device``, trace it and warm it up; refuse weights files over ``max_file_bytes``.

    Errors are built outside their ``except`` blocks on purpose: an exception's traceback holds the frames that hold
    the half-loaded model, and a raised error would keep it alive through ``__context__`` (memory residue).
    """
    err: SlotServeError | None = None
    try:
        with tf.device(device):
            model = load_keras_archive(model_file.path, max_file_bytes)
            servable = _servable(model_file.name, model, device)
            servable.warm_up()
        return servable
    except tf.errors.ResourceExhaustedError:
        err = ModelTooLarge(f"Model '{model_file.name}' does not fit this slot's memory.", model=model_file.name)
    except SlotOutOfMemory:
        err = ModelTooLarge(f"Model '{model_file.name}' does not fit this slot's memory.", model=model_file.name)
    except SlotServeError as exc:
        err = ModelInvalid(f"Model '{model_file.name}' failed its first prediction: {exc.message}", model=model_file.name)
    except Exception as exc:  # noqa: BLE001 - any failure inside Keras means the file is not loadable
        err = ModelInvalid(_refusal(model_file.name, exc), model=model_file.name)
    model = servable = None  # noqa: F841 - drop the half-loaded model before collecting
    collect_garbage()
    raise err


def _servable(name: str, model: Any, device: str) -> Servable:
    if not getattr(model, "inputs", None):
        raise ValueError("it has no defined inputs (build it with keras.Input or a Sequential input shape)")
    return Servable(name, model, device)


def _named(result: Any, names: list[str]) -> dict[str, Any]:
    """Outputs by name: a dict keeps its own keys (``tf.nest`` would sort them), a list or tensor takes ``names``."""
    if isinstance(result, dict):
        return dict(result)
    return dict(zip(names, tf.nest.flatten(result)))


def _info(name: str, dtype: Any, shape: Any) -> TensorInfo:
    dims = tuple(None if d is None else int(d) for d in (shape.as_list() if hasattr(shape, "as_list") else shape))
    return TensorInfo(name=name, dtype=np.dtype(tf.as_dtype(dtype).as_numpy_dtype), shape=dims)


def _refusal(name: str, exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if "safe_mode" in text:
        return (f"Model '{name}' is refused: it holds Python code (such as a Lambda layer), "
                "which the server never deserializes.")
    reason = text[:300].rsplit(" ", 1)[0] if len(text) > 300 else text
    return f"Model '{name}' cannot be loaded: {reason.rstrip('.') or type(exc).__name__}."


def _first_line(message: str) -> str:
    """TensorFlow's messages carry graph stack traces after the first line; a client needs only the first."""
    line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    line = line.split(" [[")[0]  # drop the op annotations TensorFlow appends, e.g. " [[{{node ...}}]]"
    return line[:300].rstrip(".")

"""A model loaded into a slot and served through one traced ``tf.function`` (never ``model.predict``).

Everything here runs on the slot's own thread, inside ``tf.device(slot device)``.
"""

import gc
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from app.errors import InvalidInput, ModelInvalid, ModelTooLarge, SlotOutOfMemory, SlotServeError
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
        single = len(self.inputs) == 1

        def serve(*args: tf.Tensor) -> Any:
            return model(args[0] if single else list(args), training=False)

        self._fn = tf.function(serve, input_signature=specs, autograph=False)
        with tf.device(device):
            concrete = self._fn.get_concrete_function()
        self.outputs = [_info(n, t.dtype, t.shape) for n, t in zip(self.output_names, tf.nest.flatten(concrete.structured_outputs))]

    @property
    def variables(self) -> list:
        """The model's TensorFlow variables (the bytes it holds in its slot)."""
        return [v.value if hasattr(v, "value") else v for v in self._model.variables]

    def __call__(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on validated arrays; outputs by name as numpy arrays."""
        try:
            with tf.device(self.device):
                result = self._fn(*(arrays[i.name] for i in self.inputs))
                flat = tf.nest.flatten(result)
                return {name: tensor.numpy() for name, tensor in zip(self.output_names, flat)}
        except tf.errors.ResourceExhaustedError as exc:
            err: SlotServeError = SlotOutOfMemory(f"The prediction ran out of this slot's memory: {exc.message}")
        except tf.errors.InvalidArgumentError as exc:
            err = InvalidInput(f"The model rejected the input: {exc.message}")
        raise err

    def warm_up(self) -> None:
        """One call with a single zero row, so tracing and kernel errors surface at load time."""
        self({i.name: np.zeros((1, *(d or 1 for d in i.shape[1:])), i.dtype) for i in self.inputs})

    def close(self) -> None:
        """Drop the model and its function; the caller drops this object and collects garbage."""
        self._fn = None
        self._model = None


def load_servable(model_file: ModelFile, device: str) -> Servable:
    """Load a store file onto ``device``, trace it and warm it up.

    Errors are built outside their ``except`` blocks on purpose: an exception's traceback holds the frames that hold
    the half-loaded model, and a raised error would keep it alive through ``__context__`` (memory residue).
    """
    err: SlotServeError | None = None
    try:
        with tf.device(device):
            model = keras.saving.load_model(model_file.path, compile=False, safe_mode=True)
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
        err = ModelInvalid(f"Model '{model_file.name}' cannot be loaded: {_reason(exc)}", model=model_file.name)
    model = servable = None  # noqa: F841 - drop the half-loaded model before collecting
    gc.collect()
    raise err


def _servable(name: str, model: Any, device: str) -> Servable:
    if not getattr(model, "inputs", None):
        raise ValueError("it has no defined inputs (build it with keras.Input or a Sequential input shape)")
    return Servable(name, model, device)


def _info(name: str, dtype: Any, shape: Any) -> TensorInfo:
    dims = tuple(None if d is None else int(d) for d in (shape.as_list() if hasattr(shape, "as_list") else shape))
    return TensorInfo(name=name, dtype=np.dtype(tf.as_dtype(dtype).as_numpy_dtype), shape=dims)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]

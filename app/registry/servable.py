"""A model loaded into a slot and served through traced functions (never ``model.predict``), whatever its format.

``.keras`` and ``.h5`` files are Keras models, served through one ``tf.function`` traced here; SavedModel
directories are served through their own signatures. Everything here runs on the slot's own thread, inside
``tf.device(slot device)``.
"""

import re
from typing import Any

import numpy as np
import tensorflow as tf

from app.errors import InvalidInput, ModelInvalid, ModelTooLarge, SlotBusy, SlotOutOfMemory, SlotServeError
from app.partitions import collect_garbage
from app.registry.footprint import MAX_CONFIG_BYTES
from app.registry.keras_files import TooBigToBuild, load_h5, load_keras_archive
from app.registry.savedmodel import load_saved_model
from app.registry.signatures import DEFAULT_SIGNATURE, Signature, check_servable, named, tensor_info
from app.registry.store import ModelFile
from app.registry.tensors import TensorInfo


class Servable:
    """One loaded model: its signatures (the default one serves ``inputs`` -> ``outputs``) and its variables."""

    def __init__(self, name: str, device: str, holder: Any, signatures: dict[str, Signature], default: str,
                 variables: list) -> None:
        self.name = name
        self.device = device
        self._holder = holder  # the Keras model or the loaded SavedModel: what owns the variables
        self._signatures: dict[str, Signature] | None = signatures
        self._variables = variables
        self.default_signature = default
        check_servable(signatures[default])
        self.inputs: list[TensorInfo] = signatures[default].inputs
        self.outputs: list[TensorInfo] = signatures[default].outputs
        self.output_names = [o.name for o in self.outputs]
        # descriptions only (no functions), so a view of the model never keeps it alive
        self.signature_tensors = {n: (s.inputs, s.outputs) for n, s in signatures.items()}

    @property
    def graph_owner(self) -> object | None:
        """The object whose graph (and its constants) lives as long as it does: the loaded model."""
        return self._holder

    @property
    def variables(self) -> list:
        """Every TensorFlow variable the model holds (the bytes it keeps in its slot)."""
        return list(self._variables)

    def run(self, arrays: dict[str, np.ndarray], signature: str | None = None) -> dict[str, tf.Tensor]:
        """Run a signature (the default one unless named); outputs by name as tensors. Call it on the slot's thread,
        inside ``tf.device(slot device)`` (``Slot.infer`` does): inputs are placed there, the traced ops already are."""
        signatures = self._signatures
        if signatures is None:  # freed by an unload between a request's checks and its turn on the slot's thread
            raise SlotBusy("The model was unloaded before this prediction ran; try again.")
        return signatures[signature or self.default_signature](arrays)

    def __call__(self, arrays: dict[str, np.ndarray], signature: str | None = None) -> dict[str, np.ndarray]:
        """Run the model on validated arrays; outputs by name as numpy arrays."""
        try:
            return {name: tensor.numpy() for name, tensor in self.run(arrays, signature).items()}
        except tf.errors.ResourceExhaustedError as exc:
            err: SlotServeError = SlotOutOfMemory(
                f"The prediction ran out of this slot's memory: {_first_line(exc.message)}.")
        except tf.errors.InternalError as exc:
            if not out_of_memory(exc):
                raise
            err = SlotOutOfMemory(f"The prediction ran out of this slot's memory: {_first_line(exc.message)}.")
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
        """Drop the model, its functions and its variables; the caller drops this object and collects garbage."""
        self._signatures = None
        self._variables = []
        self._holder = None


def load_servable(model_file: ModelFile, device: str, max_file_bytes: int, budget: int) -> Servable:
    """Load a store entry onto ``device``, trace it and warm it up; refuse weights files over ``max_file_bytes``
    and Keras configurations that would build more than ``budget`` bytes of variables.

    Errors are built outside their ``except`` blocks on purpose: an exception's traceback holds the frames that hold
    the half-loaded model, and a raised error would keep it alive through ``__context__`` (memory residue).
    """
    err: SlotServeError | None = None
    try:
        with tf.device(device):
            servable = _open(model_file, device, max_file_bytes, budget)
            servable.warm_up()
        return servable
    except TooBigToBuild as exc:
        err = ModelTooLarge(f"Model '{model_file.name}' {exc}.", model=model_file.name, needed_bytes=exc.needed_bytes)
    except tf.errors.ResourceExhaustedError:
        err = ModelTooLarge(f"Model '{model_file.name}' does not fit this slot's memory.", model=model_file.name)
    except SlotOutOfMemory:
        err = ModelTooLarge(f"Model '{model_file.name}' does not fit this slot's memory.", model=model_file.name)
    except tf.errors.InternalError as exc:
        err = (ModelTooLarge(f"Model '{model_file.name}' does not fit this slot's memory.", model=model_file.name)
               if out_of_memory(exc) else ModelInvalid(_refusal(model_file.name, exc), model=model_file.name))
    except SlotServeError as exc:
        err = ModelInvalid(f"Model '{model_file.name}' failed its first prediction: {exc.message}", model=model_file.name)
    except Exception as exc:  # noqa: BLE001 - any failure inside Keras or TensorFlow means it is not loadable
        err = ModelInvalid(_refusal(model_file.name, exc), model=model_file.name)
    servable = None
    collect_garbage()
    raise err


def _open(model_file: ModelFile, device: str, max_file_bytes: int, budget: int) -> Servable:
    if model_file.format == "savedmodel":
        loaded, signatures, default, variables = load_saved_model(model_file.path)
        return Servable(model_file.name, device, loaded, signatures, default, variables)
    if model_file.format == "h5":
        model = load_h5(model_file.path, MAX_CONFIG_BYTES, budget)
    else:
        model = load_keras_archive(model_file.path, max_file_bytes, MAX_CONFIG_BYTES, budget)
    signature = _keras_signature(model, device)
    variables = [v.value if hasattr(v, "value") else v for v in model.variables]
    return Servable(model_file.name, device, model, {DEFAULT_SIGNATURE: signature}, DEFAULT_SIGNATURE, variables)


def _keras_signature(model: Any, device: str) -> Signature:
    """Trace the Keras model once with a ``None`` batch dimension, as its ``serving_default`` signature."""
    if not getattr(model, "inputs", None):
        raise ValueError("it has no defined inputs (build it with keras.Input or a Sequential input shape)")
    inputs = [tensor_info(t.name, t.dtype, t.shape) for t in model.inputs]
    # a Sequential model (as an .h5 file gives back) has no output_names: its one output is its last layer's
    output_names = list(getattr(model, "output_names", None) or [model.layers[-1].name])
    specs = [tf.TensorSpec((None, *i.shape[1:]), i.dtype, name=i.name) for i in inputs]
    names = [i.name for i in inputs]
    try:
        structure = model.input  # the model's own nesting of its inputs: one tensor, a list or a dict
    except AttributeError:  # a Sequential model that was never called (as .h5 files give back) has one input
        structure = model.inputs[0]

    def serve(*args: tf.Tensor) -> Any:
        by_name = dict(zip(names, args))
        return model(tf.nest.map_structure(lambda t: by_name[t.name], structure), training=False)

    # The signature fixes one concrete function; calling it directly skips tf.function's dispatch (~40% of a
    # small model's call time).
    with tf.device(device):
        concrete = tf.function(serve, input_signature=specs, autograph=False).get_concrete_function()
    structured = named(concrete.structured_outputs, output_names)
    outputs = [tensor_info(name, t.dtype, t.shape, output=True) for name, t in structured.items()]
    return Signature(DEFAULT_SIGNATURE, inputs, outputs, concrete)


# How cuDNN, cuBLAS and the CUDA runtime report an allocation that failed inside a slot's memory limit. TensorFlow
# raises these as InternalError, not ResourceExhaustedError; every other InternalError stays a 500.
_ALLOCATION_FAILED = re.compile(r"_ALLOC_FAILED|failed to allocate|out[ _]of[ _]memory", re.IGNORECASE)
_OOM = re.compile(r"\bOOM\b")


def out_of_memory(exc: tf.errors.OpError) -> bool:
    """Whether a TensorFlow error reports an allocation failure (a slot out of memory), whatever its class."""
    if isinstance(exc, tf.errors.ResourceExhaustedError):
        return True
    text = exc.message or ""
    return bool(_ALLOCATION_FAILED.search(text) or _OOM.search(text))


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

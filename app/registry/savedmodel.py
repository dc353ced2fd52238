"""TensorFlow SavedModel directories: loading one onto a slot's device, and its footprint read from its checkpoint.

A SavedModel is served through its signatures (what TF Serving calls ``signature_def``), never through Keras: the
signature functions are the exported graph, and they take their inputs as keyword arguments.
"""

from pathlib import Path
from typing import Any

import tensorflow as tf

from app.registry.signatures import DEFAULT_SIGNATURE, Signature, tensor_info

SAVED_MODEL_FILE = "saved_model.pb"
_CHECKPOINT_PREFIX = ("variables", "variables")
# entries a checkpoint may carry beside the model's own variables; serving never needs them
_NOT_WEIGHTS = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/")


def is_saved_model(directory: Path) -> bool:
    """True when ``directory`` holds a SavedModel (its ``saved_model.pb``)."""
    return (directory / SAVED_MODEL_FILE).is_file()


def checkpoint_index(directory: Path) -> Path:
    """The checkpoint index of a SavedModel's variables (it may be absent: a model without variables)."""
    return directory.joinpath(*_CHECKPOINT_PREFIX).with_suffix(".index")


def variables_bytes(directory: Path) -> int:
    """Bytes of the variables a SavedModel's checkpoint holds, read from its index without loading any value.

    Optimizer slots and the save counter are skipped: a served model needs neither. Raises whatever TensorFlow
    raises for an unreadable index (the store turns it into ``ModelInvalid``).
    """
    if not checkpoint_index(directory).is_file():
        return 0
    reader = tf.train.load_checkpoint(str(directory.joinpath(*_CHECKPOINT_PREFIX)))
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    total = 0
    for key, shape in shapes.items():
        if key.startswith(_NOT_WEIGHTS) or key.startswith("optimizer/") or "/.OPTIMIZER_SLOT/" in key:
            continue
        count = 1
        for dim in shape:
            count *= int(dim)
        total += count * tf.as_dtype(dtypes[key]).size  # strings count 0: their size is not in the index
    return total


def load_saved_model(directory: Path) -> tuple[Any, dict[str, Signature], str, list[tf.Variable]]:
    """Load a SavedModel on the current device (the caller enters the slot's ``tf.device``).

    Returns the loaded object, its signatures by name (the default first), the default signature's name
    (``serving_default``, else the first by name) and every variable the object holds, which is what stays
    resident: an exported Keras model, for one, keeps two copies of its weights and its signature uses one.
    """
    loaded = tf.saved_model.load(str(directory))
    names = sorted(loaded.signatures)
    if not names:
        raise ValueError("it has no signatures to serve (export it with a serving signature)")
    default = DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in names else names[0]
    names.remove(default)
    signatures = {name: _signature(name, loaded.signatures[name]) for name in (default, *names)}
    return loaded, signatures, default, _variables(loaded)


def _signature(name: str, function: Any) -> Signature:
    _, specs = function.structured_input_signature  # signature functions take keyword arguments only
    # sorted by name: a signature's tensors are protobuf maps, whose order changes from one export to the next
    inputs = [tensor_info(key, specs[key].dtype, specs[key].shape) for key in sorted(specs)]
    returned = function.structured_outputs
    outputs = [tensor_info(key, returned[key].dtype, returned[key].shape, output=True) for key in sorted(returned)]
    keys = [i.name for i in inputs]

    def call(*tensors: tf.Tensor) -> Any:
        return function(**dict(zip(keys, tensors)))

    return Signature(name, inputs, outputs, call)


def _variables(loaded: Any) -> list[tf.Variable]:
    """Every distinct variable reachable from the loaded object (shared ones once)."""
    seen: dict[int, tf.Variable] = {}
    for node in tf.train.TrackableView(loaded).descendants():
        if isinstance(node, tf.Variable):
            seen.setdefault(id(node), node)
    return list(seen.values())

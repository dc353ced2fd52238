"""Signatures: the named entry points of a loaded model, whatever its file format.

A Keras model has one (``serving_default``, traced here by the servable); a SavedModel has one per signature it
was exported with. Every format is served through the same shape: input and output descriptions plus a function
taking the inputs' tensors in order and returning the outputs by name.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from app.registry.tensors import TensorInfo

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class Signature:
    """One entry point: its inputs, its outputs and the function that runs it (positional tensors, in ``inputs``'
    order). The function holds the model's variables: a servable drops its signatures when it closes."""

    name: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    fn: Callable[..., Any]

    def __call__(self, arrays: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
        result = self.fn(*(tf.convert_to_tensor(arrays[i.name]) for i in self.inputs))
        outputs = named(result, [o.name for o in self.outputs])
        # bfloat16 has no JSON or wire form the protocols share: it is answered as float32 (exact widening)
        return {k: tf.cast(v, tf.float32) if v.dtype == tf.bfloat16 else v for k, v in outputs.items()}


def tensor_info(name: str, dtype: Any, shape: Any, output: bool = False) -> TensorInfo:
    """A ``TensorInfo`` from TensorFlow's dtype and shape (``None`` for variable dimensions).

    Raises ``ValueError`` for a tensor of unknown rank: requests are checked by shape, so the rank must be known.
    """
    shape = tf.TensorShape(shape)
    if shape.rank is None:
        raise ValueError(f"tensor '{name}' has an unknown rank, which the server cannot check requests against")
    dims = tuple(None if d is None else int(d) for d in shape.as_list())
    dtype = tf.as_dtype(dtype)
    if output and dtype == tf.bfloat16:
        dtype = tf.float32  # what Signature.__call__ answers with
    return TensorInfo(name=name, dtype=np.dtype(dtype.as_numpy_dtype), shape=dims)


def named(result: Any, names: list[str]) -> dict[str, Any]:
    """Outputs by name: a dict keeps its own keys (``tf.nest`` would sort them), a list or tensor takes ``names``."""
    if isinstance(result, dict):
        return dict(result)
    return dict(zip(names, tf.nest.flatten(result)))


def unservable(inputs: list[TensorInfo], outputs: list[TensorInfo]) -> str | None:
    """Why a signature with these tensors cannot be served (strings, objects), or None when it can."""
    for kind, infos in (("takes", inputs), ("returns", outputs)):
        for info in infos:
            if info.dtype.kind not in "biuf":
                return f"{kind} {info.describe()}, and only numeric or boolean tensors are served"
    return None


def check_servable(signature: Signature) -> None:
    """Refuse, at load time, a default signature the request path cannot feed or answer (strings, objects)."""
    reason = unservable(signature.inputs, signature.outputs)
    if reason:
        raise ValueError(f"its signature '{signature.name}' {reason}")

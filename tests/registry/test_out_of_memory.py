"""An allocation failure inside a slot is 507 slot_out_of_memory whichever error class TensorFlow raises it as.

cuDNN and cuBLAS allocation failures surface as ``InternalError``, not ``ResourceExhaustedError``; no CPU kernel
raises them, so the mapping tests are control-flow tests: no GPU measured. The signature's function raises the error
TensorFlow would, with messages in the forms cuDNN, cuBLAS and TensorFlow's allocator use.
"""

from http import HTTPStatus

import numpy as np
import pytest
import tensorflow as tf

from app.errors import SlotOutOfMemory
from app.registry.servable import Servable, out_of_memory
from app.registry.signatures import DEFAULT_SIGNATURE, Signature
from app.registry.tensors import TensorInfo

OUT_OF_MEMORY = [
    "cuDNN launch failure : input shape ([1,3,224,224]) CUDNN_STATUS_ALLOC_FAILED",
    "Failed to create cuBLAS handle: CUBLAS_STATUS_ALLOC_FAILED",
    "Dst tensor is not initialized. failed to allocate memory",
    "OOM when allocating tensor with shape[4096,4096] and type float on /job:localhost/device:GPU:3",
    "CUDA_ERROR_OUT_OF_MEMORY: out of memory",
]
OTHER = [
    "cuDNN launch failure : input shape ([1,3]) CUDNN_STATUS_EXECUTION_FAILED",
    "Blas xGEMM launch failed : a.shape=[1,2], b.shape=[2,2], m=1, n=2, k=2",
    "the room booking failed",  # "oom" inside a word is not OOM
]


def raising(error: tf.errors.OpError) -> Servable:
    """A servable whose signature raises ``error`` when called, as a traced function would on the GPU."""
    def fn(*_: tf.Tensor) -> dict:
        raise error

    x = TensorInfo("x", np.dtype(np.float32), (None, 2))
    y = TensorInfo("y", np.dtype(np.float32), (None, 2))
    return Servable("m", "/device:CPU:0", None, {DEFAULT_SIGNATURE: Signature(DEFAULT_SIGNATURE, [x], [y], fn)},
                    DEFAULT_SIGNATURE, [])


@pytest.mark.parametrize("message", OUT_OF_MEMORY)
def test_allocation_failures_are_out_of_memory(message: str) -> None:
    assert out_of_memory(tf.errors.InternalError(None, None, message))


@pytest.mark.parametrize("message", OTHER)
def test_other_internal_errors_are_not(message: str) -> None:
    assert not out_of_memory(tf.errors.InternalError(None, None, message))


def test_resource_exhausted_is_out_of_memory_whatever_it_says() -> None:
    assert out_of_memory(tf.errors.ResourceExhaustedError(None, None, "anything"))


@pytest.mark.usefixtures("specs")
@pytest.mark.parametrize("message", OUT_OF_MEMORY[:2])
def test_control_flow_a_prediction_failing_to_allocate_is_507_slot_out_of_memory(message: str) -> None:
    servable = raising(tf.errors.InternalError(None, None, f"{message}\n\t [[{{{{node conv2d}}}}]]"))
    with pytest.raises(SlotOutOfMemory) as raised:
        servable({"x": np.zeros((1, 2), np.float32)})
    assert raised.value.status == HTTPStatus.INSUFFICIENT_STORAGE and raised.value.code == "slot_out_of_memory"
    assert raised.value.message == f"The prediction ran out of this slot's memory: {message}."


@pytest.mark.usefixtures("specs")
def test_control_flow_any_other_internal_error_stays_internal() -> None:
    servable = raising(tf.errors.InternalError(None, None, OTHER[0]))
    with pytest.raises(tf.errors.InternalError):
        servable({"x": np.zeros((1, 2), np.float32)})

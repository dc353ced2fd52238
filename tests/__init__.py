"""slotserve's tests. Imported before any test module, and so before TensorFlow touches a GPU."""

import os

# cuBLAS/cuDNN compute float32 matmuls in TF32 on recent GPUs unless told otherwise; outputs are compared with Keras's
# own in float32, so TF32 is off in the test process and in every server a test starts (they inherit the environment).
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")

"""slotserve: one process, many Keras/TensorFlow models, one fixed memory slot per client.

TensorFlow reads ``TF_CPU_ALLOCATOR_USE_BFC`` once, when it is first imported, and any ``app`` module is imported
after this package, so this is the one place early enough to set it: with it, the host allocator reports real
figures (``get_memory_info("CPU:0")``). It only sets defaults; nothing here imports TensorFlow.
"""

import os

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

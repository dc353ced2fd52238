"""The floor for bench/load.py: how many one-row calls per second the model's tf.function alone sustains."""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if __name__ == "__main__":
    model = keras.saving.load_model(sys.argv[1], compile=False)
    width = model.inputs[0].shape[1]
    fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, width], tf.float32)])
    x = np.full((1, width), 0.5, np.float32)
    for _ in range(200):
        fn(x).numpy()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < 3.0:
        fn(x).numpy()
        count += 1
    print(f"{count / (time.perf_counter() - started):.1f}")

"""A model store of hostile and careless files, built by the tests: SavedModels whose graphs touch files or run
Python, constants that escape a variables-only count, Keras files whose configuration is a bomb, and a store with
odd version directories and thousands of assets.
"""

import gc
import io
import shutil
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

import app  # noqa: F401 - sets TF_CPU_ALLOCATOR_USE_BFC before TensorFlow is imported

MIB = 1 << 20
SPEC = tf.TensorSpec([None, 4], tf.float32, name="x")


def _save(directory: Path, fn) -> None:
    module = tf.Module()
    module.serve = tf.function(fn, input_signature=[SPEC])
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


def _writes(target: Path):
    def serve(x):
        tf.io.write_file(str(target), "written by a model")
        return {"y": x * 2.0}
    return serve


def _writes_in_a_branch(target: Path):
    def serve(x):
        def write():
            tf.io.write_file(str(target), "written by a model")
            return x
        return {"y": tf.cond(tf.reduce_sum(x) > 1e30, write, lambda: x)}
    return serve


def _reads(source: Path):
    return lambda x: {"y": x + tf.cast(tf.strings.length(tf.io.read_file(str(source))), tf.float32)}


def _constant(values: tf.Tensor):
    return lambda x: {"y": x + tf.reduce_sum(values)}


def _padded_keras(source: Path, target: Path, config_bytes: int) -> None:
    """A copy of a .keras archive whose config.json is padded with white space to ``config_bytes`` (deflated, the
    archive stays small: a bomb)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for member in src.namelist():
            data = src.read(member)
            if member == "config.json":
                data = data + b" " * (config_bytes - len(data))
            dst.writestr(member, data)


def _padded_h5(source: Path, target: Path, config_bytes: int) -> None:
    shutil.copy(source, target)
    with h5py.File(target, "r+") as h5:
        config = h5.attrs["model_config"]
        config = config.decode() if isinstance(config, bytes) else config
        h5.attrs["model_config"] = config + " " * (config_bytes - len(config))


def build_hostile(directory: Path) -> dict[str, Path]:
    """Write the hostile store into ``directory``; return the paths the tests look at."""
    paths = {"written": directory / "written.txt", "secret": directory / "secret.txt"}
    paths["secret"].write_text("a file the server must not read for a model")
    _save(directory / "writes", _writes(paths["written"]))
    _save(directory / "writes_in_branch", _writes_in_a_branch(paths["written"]))
    _save(directory / "reads", _reads(paths["secret"]))
    _save(directory / "python_callback", lambda x: {"y": tf.numpy_function(lambda a: a * 2, [x], tf.float32)})
    # 32 MiB of constant stored as one splat value: a tiny file that materialises past a 16 MiB slot
    _save(directory / "splat_constant", _constant(tf.constant(1.0, shape=(4096, 2048))))
    rng = np.random.default_rng(9)
    _save(directory / "dense_constant", _constant(tf.constant(rng.random((512, 1024), np.float32))))  # 2 MiB
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4,), name="x")
    small = keras.Model(inputs, keras.layers.Dense(2, name="y")(inputs))
    small.save(directory / "plain.keras")
    small.save(directory / "plain_h5.h5")
    _padded_keras(directory / "plain.keras", directory / "config_bomb.keras", 20 * MIB)
    _padded_h5(directory / "plain_h5.h5", directory / "config_bomb_h5.h5", 20 * MIB)
    # a versioned SavedModel with thousands of assets, and version directories named with non-ASCII digits
    many = directory / "many_assets" / "1"
    small.export(str(many), verbose=False)
    assets = many / "assets"
    assets.mkdir(exist_ok=True)
    for i in range(3000):
        (assets / f"a{i}.txt").write_bytes(b"x" * 100)
    for odd in ("²", "١"):
        shutil.copytree(many, directory / "many_assets" / odd, ignore=shutil.ignore_patterns("a*.txt"))
    keras.backend.clear_session()
    gc.collect()
    return paths

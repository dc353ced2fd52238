"""A model store of hostile and careless files, built by the tests: SavedModels whose graphs touch files or run
Python, constants that escape a variables-only count, Keras files whose configuration is a bomb, and a store with
odd version directories and thousands of assets.
"""

import gc
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


def _tf1_main_op(target: Path, written: Path) -> None:
    """A TensorFlow 1 SavedModel whose main op, run at load, writes a file."""
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), tf1.Session(graph=graph) as session:
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        y = tf.identity(x * 2.0, name="y")
        main_op = tf.group(tf.io.write_file(str(written), "written at load"), name="main_op")
        builder = tf1.saved_model.Builder(str(target))
        signature = tf1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature},
                                             main_op=main_op)
        builder.save()


def _renamed_constant(source: Path, target: Path) -> None:
    """A copy of a SavedModel whose big ``Const`` became a ``HostConst`` (same tensor, another op name)."""
    from tensorflow.core.protobuf import saved_model_pb2

    shutil.copytree(source, target)
    saved = saved_model_pb2.SavedModel.FromString((target / "saved_model.pb").read_bytes())
    for function in saved.meta_graphs[0].graph_def.library.function:
        for node in function.node_def:
            if node.op == "Const" and node.attr["value"].tensor.tensor_shape.dim:
                node.op = "HostConst"
    (target / "saved_model.pb").write_bytes(saved.SerializeToString())


def _units_bomb(source: Path, target: Path, units: int) -> None:
    """A copy of a .keras archive whose config asks its Dense layer for ``units`` units (its weights stay small):
    Keras would allocate the kernel while building, before it notices the weights do not match."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for member in src.namelist():
            data = src.read(member)
            if member == "config.json":
                data = data.replace(b'"units": 2', b'"units": %d' % units)
            dst.writestr(member, data)


def build_hostile(directory: Path) -> dict[str, Path]:
    """Write the hostile store into ``directory``; return the paths the tests look at."""
    paths = {"written": directory / "written.txt", "secret": directory / "secret.txt"}
    paths["secret"].write_text("a file the server must not read for a model")
    _save(directory / "writes", _writes(paths["written"]))
    _save(directory / "writes_in_branch", _writes_in_a_branch(paths["written"]))
    _save(directory / "reads", _reads(paths["secret"]))
    _save(directory / "python_callback", lambda x: {"y": tf.numpy_function(lambda a: a * 2, [x], tf.float32)})
    _save(directory / "dataset", lambda x: {"y": x + tf.data.Dataset.from_tensors(x).cache(
        str(paths["written"])).reduce(0.0, lambda total, row: total + tf.reduce_sum(row))})
    _save(directory / "vocab_reader", lambda x: {"y": x + tf.cast(tf.raw_ops.GenerateVocabRemapping(
        new_vocab_file=str(paths["secret"]), old_vocab_file=str(paths["secret"]), new_vocab_offset=0,
        num_new_vocab=1)[1], tf.float32)})
    _tf1_main_op(directory / "tf1_main_op", paths["written"])
    # 32 MiB of constant stored as one splat value: a tiny file that materialises past a 16 MiB slot
    _save(directory / "splat_constant", _constant(tf.constant(1.0, shape=(4096, 2048))))
    rng = np.random.default_rng(9)
    _save(directory / "dense_constant", _constant(tf.constant(rng.random((512, 1024), np.float32))))  # 2 MiB
    _renamed_constant(directory / "splat_constant", directory / "host_constant")
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4,), name="x")
    small = keras.Model(inputs, keras.layers.Dense(2, name="y")(inputs))
    small.save(directory / "plain.keras")
    small.save(directory / "plain_h5.h5")
    _padded_keras(directory / "plain.keras", directory / "config_bomb.keras", 20 * MIB)
    _units_bomb(directory / "plain.keras", directory / "units_bomb.keras", 25_000_000)  # a 400 MB kernel
    keras.utils.set_random_seed(3)
    h5_bomb = keras.Model(inputs, keras.layers.Dense(2, name="y")(inputs))
    h5_bomb.save(directory / "units_bomb_h5.h5")
    with h5py.File(directory / "units_bomb_h5.h5", "r+") as h5:
        config = h5.attrs["model_config"]
        config = config.decode() if isinstance(config, bytes) else config
        h5.attrs["model_config"] = config.replace('"units": 2', '"units": 25000000')
    _padded_h5(directory / "plain_h5.h5", directory / "config_bomb_h5.h5", 20 * MIB)
    # a versioned SavedModel with thousands of assets, and version directories named with non-ASCII digits
    many = directory / "many_assets" / "1"
    small.export(str(many), verbose=False)
    assets = many / "assets"
    assets.mkdir(exist_ok=True)
    for i in range(3000):
        (assets / f"a{i}.txt").write_bytes(b"x" * 100)
    for odd in ("²", "١", "007"):  # not versions: non-ASCII digits, and a second name for version 7
        shutil.copytree(many, directory / "many_assets" / odd, ignore=shutil.ignore_patterns("a*.txt"))
    keras.backend.clear_session()
    gc.collect()
    return paths

"""A second model store for the format and TF Serving tests: SavedModels (both layouts) exported from Keras, and
legacy .h5 files.

Every model is built and saved here, in its own temp directory, with Keras's own outputs for fixed inputs. The
server over this store uses the session's slot plan (TensorFlow accepts one per process), so the store depends on
``specs`` before any model touches TensorFlow. The fixtures over it live in tests/protocols/conftest.py.
"""

import gc
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import app  # noqa: F401 - sets TF_CPU_ALLOCATOR_USE_BFC before TensorFlow is imported
from tests.models import Reference

# The named-input example of TF Serving's REST documentation (its string input "tag" left out: string tensors are
# not served), as a batch of two rows.
DOC_INPUTS = {"signal": np.array([[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]], np.float32),
              "sensor": np.array([[[1, 2], [3, 4]], [[4, 5], [6, 8]]], np.float32)}


def _signals(seed: int) -> tuple[keras.Model, keras.Model]:
    """Two named inputs (the documentation's ``signal`` and ``sensor``), two outputs; and its hidden layer."""
    keras.utils.set_random_seed(seed)
    signal, sensor = keras.Input((5,), name="signal"), keras.Input((2, 2), name="sensor")
    joined = keras.layers.Concatenate()([signal, keras.layers.Flatten()(sensor)])
    hidden = keras.layers.Dense(6, activation="tanh", name="hidden")(joined)
    outputs = {"score": keras.layers.Dense(1, name="score")(hidden),
               "probs": keras.layers.Dense(3, activation="softmax", name="probs")(hidden)}
    inputs = {"signal": signal, "sensor": sensor}
    return keras.Model(inputs, outputs), keras.Model(inputs, hidden)


def _export_signals(model: keras.Model, embed: keras.Model, target: Path) -> None:
    """Export with two signatures: ``serving_default`` and ``embed`` (the hidden layer, for ``signature_name``)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = {"signal": tf.TensorSpec((None, 5), tf.float32, name="signal"),
            "sensor": tf.TensorSpec((None, 2, 2), tf.float32, name="sensor")}
    archive.add_endpoint("serving_default", lambda x: model(x, training=False), input_signature=[spec])
    archive.add_endpoint("embed", lambda x: {"hidden": embed(x, training=False)}, input_signature=[spec])
    archive.write_out(str(target), verbose=False)


def _half_plus_three() -> keras.Model:
    """TF Serving's documentation example: one scalar per row, y = x / 2 + 3."""
    return keras.Sequential([keras.Input((), name="x"), keras.layers.Rescaling(0.5, offset=3.0, name="y")])


def _flat12() -> keras.Model:
    """Rows of shape [1, 2], the documentation's "list of 2 tensors each of [1, 2] shape"."""
    keras.utils.set_random_seed(21)
    inputs = keras.Input((1, 2), name="x")
    return keras.Model(inputs, keras.layers.Dense(3, name="y")(keras.layers.Flatten()(inputs)))


def _legacy() -> keras.Model:
    """A compiled, fitted Sequential model: its .h5 also holds optimizer weights, which serving never loads."""
    keras.utils.set_random_seed(22)
    model = keras.Sequential([keras.Input((6,), name="x"), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, name="y")])
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(3)
    model.fit(rng.normal(size=(8, 6)), rng.normal(size=(8, 2)), epochs=1, verbose=0)
    return model


def _pair_h5() -> keras.Model:
    keras.utils.set_random_seed(23)
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    hidden = keras.layers.Dense(4, activation="tanh")(keras.layers.Concatenate()([a, b]))
    return keras.Model([a, b], [keras.layers.Dense(1, name="low")(hidden), keras.layers.Dense(2, name="high")(hidden)])


def _reference(path: Path, model: Any, inputs: dict[str, np.ndarray], weights: int, names: list[str]) -> Reference:
    """Keras's own outputs for ``inputs``, by output name."""
    if len(inputs) == 1:
        args: Any = next(iter(inputs.values()))
    else:  # the signals models take a dict, pair_h5 a list in its inputs' order
        args = inputs if names == [] or names == ["hidden"] else [inputs[t.name] for t in model.inputs]
    result = model(args, training=False)
    if isinstance(result, dict):
        outputs = {k: np.asarray(v) for k, v in result.items()}
    else:
        outputs = {n: np.asarray(v) for n, v in zip(names, result if isinstance(result, list) else [result])}
    return Reference(path, weights, inputs, outputs)


def _export_odd_outputs(target: Path) -> None:
    """A SavedModel whose default signature answers in bfloat16 and whose ``strings`` signature answers text."""
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    spec = tf.TensorSpec([None, 2], tf.float32, name="x")
    module.half = tf.function(lambda x: {"y": tf.cast(x * module.scale, tf.bfloat16)}, input_signature=[spec])
    module.text = tf.function(lambda x: {"s": tf.strings.as_string(x)}, input_signature=[spec])
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.half, "strings": module.text})


def keras_weight_bytes(model: keras.Model) -> int:
    return sum(int(np.prod(w.shape)) * 4 for w in model.weights)


def build_formats(directory: Path) -> dict[str, Reference]:
    """Save every format into ``directory``; ``weight_bytes`` of each reference is what a loaded model holds."""
    rng = np.random.default_rng(5)
    refs: dict[str, Reference] = {}
    for version, seed in ((1, 31), (2, 32)):  # TF Serving's layout, two versions: the highest is served
        model, embed = _signals(seed)
        _export_signals(model, embed, directory / "signals" / str(version))
        # an export keeps two copies of every weight (its `variables` and `_all_variables`) and loading restores both
        weights = 2 * keras_weight_bytes(model)
        refs[f"signals_v{version}"] = _reference(directory / "signals" / str(version), model, DOC_INPUTS, weights, [])
        refs[f"signals_v{version}_embed"] = _reference(directory / "signals" / str(version), embed, DOC_INPUTS,
                                                       weights, ["hidden"])
    half = _half_plus_three()
    half.export(str(directory / "half_plus_three" / "123"), verbose=False)
    refs["half_plus_three"] = _reference(directory / "half_plus_three" / "123", half,
                                         {"x": np.array([1.0, 2.0, 5.0], np.float32)}, 0, ["output_0"])
    flat = _flat12()
    flat.export(str(directory / "flat12"), verbose=False)  # the plain layout: flat12/saved_model.pb
    refs["flat12"] = _reference(directory / "flat12", flat, {"x": np.array([[[1, 2]], [[3, 4]]], np.float32)},
                                2 * keras_weight_bytes(flat), ["output_0"])
    for name, model, names in (("legacy", _legacy(), ["y"]), ("pair_h5", _pair_h5(), ["low", "high"])):
        model.save(directory / f"{name}.h5")
        inputs = {t.name: rng.normal(size=(4, *t.shape[1:])).astype(np.float32) for t in model.inputs}
        refs[name] = _reference(directory / f"{name}.h5", model, inputs, keras_weight_bytes(model), names)
    unsafe_input = keras.Input((4,), name="x")  # a Lambda layer is Python code: never deserialized
    keras.Model(unsafe_input, keras.layers.Lambda(lambda t: t * 2.0)(unsafe_input)).save(directory / "unsafe.h5")
    _export_odd_outputs(directory / "odd_outputs")
    broken = directory / "broken" / "7"
    (broken / "variables").mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a saved model")
    (broken / "variables" / "variables.index").write_bytes(b"not an index")
    (directory / "empty_dir").mkdir()
    keras.backend.clear_session()  # the test process's own reference models only; no server slot exists yet
    gc.collect()
    return refs

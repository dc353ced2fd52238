"""Tiny Keras models the tests build and save themselves, with Keras's own outputs for fixed inputs."""

import gc
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras  # noqa: E402
import numpy as np

import app  # noqa: F401 - sets TF_CPU_ALLOCATOR_USE_BFC before TensorFlow is imported

MIB = 1 << 20


@dataclass(frozen=True)
class Reference:
    """A saved model, its weight bytes and Keras's own outputs for ``inputs``."""

    path: Path
    weight_bytes: int
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


def _mlp(width: int, hidden: int, out: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((width,), name="x")
    h = keras.layers.Dense(hidden, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(out, name="y")(h))


def _pair() -> keras.Model:
    keras.utils.set_random_seed(7)
    a, b = keras.Input((8,), name="a"), keras.Input((4,), name="b")
    h = keras.layers.Dense(16, activation="tanh")(keras.layers.Concatenate()([a, b]))
    return keras.Model({"a": a, "b": b}, {"score": keras.layers.Dense(1, name="score")(h),
                                          "probs": keras.layers.Dense(3, activation="softmax", name="probs")(h)})


def _ints() -> keras.Model:
    keras.utils.set_random_seed(8)
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    h = keras.layers.Flatten()(keras.layers.Embedding(50, 4)(tokens))
    return keras.Model(tokens, keras.layers.Dense(2, name="y")(h))


def _unsafe() -> keras.Model:
    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))


def _megabytes(mib: float, seed: int) -> keras.Model:
    """A 256-wide MLP whose weights take about ``mib`` MiB."""
    units = max(1, int(mib * MIB / 4 / 256))
    return _mlp(256, units, 4, seed)


def _trained() -> keras.Model:
    """A compiled, fitted model: its file also holds optimizer state, which serving never loads."""
    model = _mlp(16, 32, 2, seed=11)
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(1)
    model.fit(rng.normal(size=(8, 16)), rng.normal(size=(8, 2)), epochs=1, verbose=0)
    return model


def _hog() -> keras.Model:
    """Small weights, 32 MiB of temporaries per row: a large batch exhausts memory at inference time."""
    keras.utils.set_random_seed(12)
    inputs = keras.Input((1, 2), name="x")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.UpSampling1D(size=2**22)(inputs))
    return keras.Model(inputs, keras.layers.Dense(1, name="y")(h))


def _scalar() -> keras.Model:
    """Sums its whole batch into one number: its output has no batch dimension, so it cannot be served."""
    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, keras.ops.sum(inputs))


def _sequence() -> keras.Model:
    """Rows of any length: (None, 4) per row, pooled to 3 outputs."""
    keras.utils.set_random_seed(13)
    inputs = keras.Input((None, 4), name="x")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(8)(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, name="y")(pooled))


def write_deflated_corrupt(path: Path, target: Path) -> None:
    """A .keras archive whose weights member is compressed and then damaged (zlib fails while reading it)."""
    src = zipfile.ZipFile(path)
    with zipfile.ZipFile(target, "w") as dst:
        for member in src.namelist():
            data = src.read(member)
            if member == "model.weights.h5":
                info = zipfile.ZipInfo(member)
                info.compress_type = zipfile.ZIP_DEFLATED
                dst.writestr(info, data)
            else:
                dst.writestr(member, data)
    raw = bytearray(target.read_bytes())
    start = raw.find(b"model.weights.h5") + 40
    raw[start:start + 64] = bytes(range(64))
    target.write_bytes(bytes(raw))


def write_half_precision_weights(path: Path, target: Path) -> None:
    """Copy a .keras file with its weights stored as float16: the file then claims half the bytes the loaded
    (float32) model really takes, which is what the post-load check exists to catch."""
    src = zipfile.ZipFile(path)
    buffer = io.BytesIO()
    with h5py.File(io.BytesIO(src.read("model.weights.h5")), "r") as h5, h5py.File(buffer, "w") as out:
        def copy(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                out.create_dataset(name, data=obj[()].astype(np.float16))
            else:
                out.require_group(name).attrs.update(dict(obj.attrs))
        h5.visititems(copy)
        out.attrs.update(dict(h5.attrs))
    with zipfile.ZipFile(target, "w") as dst:
        for member in src.namelist():
            dst.writestr(member, buffer.getvalue() if member == "model.weights.h5" else src.read(member))


BUILDERS = {
    "tiny": lambda: _mlp(32, 16, 10, seed=1),
    "tiny2": lambda: _mlp(12, 8, 4, seed=2),
    "wide": lambda: _mlp(64, 64, 3, seed=3),
    "pair": _pair,
    "ints": _ints,
    "four_mb": lambda: _megabytes(4, seed=4),
    "six_mb": lambda: _megabytes(6, seed=5),
    "nine_mb": lambda: _megabytes(9, seed=6),
    "nine_mb_b": lambda: _megabytes(9, seed=9),
    "big": lambda: _megabytes(20, seed=10),
    "trained": _trained,
    "hog": _hog,
    "sequence": _sequence,
}


def build_store(directory: Path) -> dict[str, Reference]:
    """Save every test model into ``directory`` (plus a corrupt and an unsafe file); return the references."""
    rng = np.random.default_rng(0)
    refs = {}
    for name, build in BUILDERS.items():
        model = build()
        path = directory / f"{name}.keras"
        model.save(path)
        inputs = {}
        for tensor in model.inputs:
            shape = (5, *(d or 6 for d in tensor.shape[1:]))
            if tensor.dtype.startswith("int"):
                inputs[tensor.name] = rng.integers(0, 50, shape).astype(tensor.dtype)
            else:
                inputs[tensor.name] = rng.normal(size=shape).astype(tensor.dtype)
        result = model(inputs if len(inputs) > 1 else next(iter(inputs.values())), training=False)
        outputs = {k: np.asarray(v) for k, v in result.items()} if isinstance(result, dict) else {
            model.output_names[0]: np.asarray(result)}
        weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)  # not the optimizer's
        refs[name] = Reference(path, weight_bytes, inputs, outputs)
        del model, result
    _unsafe().save(directory / "unsafe.keras")
    write_half_precision_weights(refs["big"].path, directory / "lying.keras")
    write_deflated_corrupt(refs["tiny"].path, directory / "deflated.keras")
    _scalar().save(directory / "scalar.keras")
    (directory / "corrupt.keras").write_bytes(b"PK\x03\x04 this is not a keras archive" * 10)
    (directory / "notes.txt").write_text("not a model")
    keras.backend.clear_session()  # the test process's own reference models only; no server slot exists yet
    gc.collect()
    return refs

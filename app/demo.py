"""Small, real Keras models for trying the server out (``slotserve demo-models DIR``)."""

from pathlib import Path

import keras


def _mlp(name: str, width: int, hidden: list[int], outputs: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((width,), name="x")
    for units in hidden:
        x = keras.layers.Dense(units, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(outputs, name="y")(x), name=name)


def _two_in_two_out(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    a, b = keras.Input((8,), name="a"), keras.Input((4,), name="b")
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([a, b]))
    score = keras.layers.Dense(1, name="score")(h)
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(h)
    return keras.Model({"a": a, "b": b}, {"score": score, "probs": probs}, name="pair")


def demo_models() -> dict[str, keras.Model]:
    """name -> model: different input widths and sizes, one with two inputs and two outputs."""
    return {
        "tiny": _mlp("tiny", 32, [16], 10, seed=1),                   # ~0.7k parameters
        "iris": _mlp("iris", 4, [8], 3, seed=2),                      # the classic width
        "mnist": _mlp("mnist", 784, [128], 10, seed=3),               # ~0.1M parameters
        "medium": _mlp("medium", 784, [1024, 1024], 10, seed=4),      # ~1.9M parameters, ~7.5 MB
        "pair": _two_in_two_out(seed=5),
    }


def write_demo_models(directory: Path) -> list[Path]:
    """Save every demo model as ``DIR/<name>.keras``; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, model in demo_models().items():
        path = directory / f"{name}.keras"
        model.save(path)
        paths.append(path)
    return paths

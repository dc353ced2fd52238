"""Small, real Keras models for trying the server out (``slotserve demo-models DIR``)."""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras

from app.registry.store import FORMATS


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


@dataclass(frozen=True)
class DemoFile:
    """One demo model's outcome: written to ``path``, or not written because ``existing`` holds that name."""

    name: str
    path: Path
    existing: Path | None = None


def write_demo_models(directory: Path) -> list[DemoFile]:
    """Save every demo model as ``DIR/<name>.keras``, unless the directory already has something by that name.

    Never overwrites: a demo name taken in any store form (``<name>.keras``, ``<name>.h5``, a ``<name>/`` SavedModel
    or anything else there) is left alone, since ``.keras`` would win the name over the user's model in the store.
    Each model is saved under a temporary name first and hard-linked into place, which fails rather than replaces
    if the name appeared meanwhile, and never leaves a half-written ``.keras`` behind.
    """
    directory.mkdir(parents=True, exist_ok=True)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix=".demo-", dir=directory) as scratch:  # same filesystem: link works
        for name, model in demo_models().items():
            path = directory / f"{name}.keras"
            if taken := _taken(directory, name):
                outcomes.append(DemoFile(name, path, taken))
                continue
            staged = Path(scratch) / f"{name}.keras"
            model.save(staged)
            outcomes.append(DemoFile(name, path) if _place(staged, path) else DemoFile(name, path, path))
    return outcomes


def _place(staged: Path, path: Path) -> bool:
    """Put ``staged`` at ``path`` unless ``path`` exists (then False): a hard link, or on a filesystem without
    them an exclusive create and a copy (removed again if the copy fails)."""
    try:
        os.link(staged, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        pass
    try:
        out = open(path, "xb")
    except FileExistsError:
        return False
    try:
        with out, open(staged, "rb") as src:
            shutil.copyfileobj(src, out)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return True


def _taken(directory: Path, name: str) -> Path | None:
    """What already answers to ``name`` in the store directory, if anything."""
    for candidate in (directory / f"{name}{suffix}" for suffix in ("", *FORMATS)):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return None

"""Loading Keras files: ``.keras`` archives without stalling the rest of the process, and legacy ``.h5`` files.

``keras.saving.load_model`` reads the weights file into a ``BytesIO`` and lets h5py read it through Python file
callbacks: for a 20M-parameter model that holds the GIL for 100-200 ms at a stretch, and every other slot's requests
wait. Extracting the weights file first lets h5py read it natively (~20 ms, no long GIL holds). Configuration,
safe mode and weight assignment stay Keras's own public API; archives with assets keep Keras's full path.
"""

import contextlib
import json
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

_CONFIG = "config.json"
_WEIGHTS = "model.weights.h5"
_PLAIN = {"metadata.json", _CONFIG, _WEIGHTS}


def load_keras_archive(path: Path, max_weights_bytes: int, max_config_bytes: int) -> Any:
    """The model in a ``.keras`` archive, built with ``safe_mode=True`` and without its compile state.

    ``max_weights_bytes`` bounds what is extracted (a decompression bomb stops there with ``ValueError``), and
    ``max_config_bytes`` what is read of its configuration.
    """
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        if _CONFIG in members and members[_CONFIG].file_size > max_config_bytes:  # zipfile never reads past it
            raise ValueError(f"its config.json is larger than {max_config_bytes} bytes")
        if set(members) != _PLAIN:  # assets or another weights format: Keras's own loader
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        config = json.loads(archive.read(_CONFIG))
        config["compile_config"] = None
        with _object_sharing():
            model = keras.saving.deserialize_keras_object(config, safe_mode=True)
        with tempfile.TemporaryDirectory(prefix="slotserve-weights-") as scratch:
            weights = Path(scratch) / _WEIGHTS
            _extract(archive, weights, max_weights_bytes)
            model.load_weights(weights)
    return model


def load_h5(path: Path) -> Any:
    """The model in a legacy HDF5 file (``model.save("x.h5")``), with ``safe_mode=True`` and without compile state.

    h5py reads the file natively from its path, so no extraction is needed; the optimizer's weights stored beside
    the model's are never read with ``compile=False``.
    """
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def _extract(archive: zipfile.ZipFile, target: Path, max_bytes: int) -> None:
    copied = 0
    with archive.open(_WEIGHTS) as source, target.open("wb") as sink:
        while chunk := source.read(1 << 20):
            copied += len(chunk)
            if copied > max_bytes:
                raise ValueError(f"its weights file is larger than {max_bytes} bytes")
            sink.write(chunk)


@contextlib.contextmanager
def _object_sharing() -> Iterator[None]:
    """Keras's own scope for objects shared inside one config, as its loader uses; a no-op if Keras moves it."""
    try:
        from keras.src.saving.serialization_lib import ObjectSharingScope
    except ImportError:
        yield
        return
    with ObjectSharingScope():
        yield


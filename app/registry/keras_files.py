"""Loading Keras files: ``.keras`` archives without stalling the rest of the process, and legacy ``.h5`` files.

``keras.saving.load_model`` reads the weights file into a ``BytesIO`` and lets h5py read it through Python file
callbacks: for a 20M-parameter model that holds the GIL for 100-200 ms at a stretch, and every other slot's requests
wait. Extracting the weights file first lets h5py read it natively (~20 ms, no long GIL holds). Configuration,
safe mode and weight assignment stay Keras's own public API; archives with assets keep Keras's full path.
"""

import contextlib
import copy
import json
import math
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np

_CONFIG = "config.json"
_WEIGHTS = "model.weights.h5"
_PLAIN = {"metadata.json", _CONFIG, _WEIGHTS}


class TooBigToBuild(ValueError):
    """The configuration builds more variables than the slot has room for (learnt before any is allocated)."""

    def __init__(self, needed_bytes: int, budget: int) -> None:
        super().__init__(f"its configuration builds {needed_bytes} bytes of variables; the slot has {budget} free")
        self.needed_bytes = needed_bytes


def load_keras_archive(path: Path, max_weights_bytes: int, max_config_bytes: int, budget: int) -> Any:
    """The model in a ``.keras`` archive, built with ``safe_mode=True`` and without its compile state.

    ``max_weights_bytes`` bounds what is extracted (a decompression bomb stops there with ``ValueError``),
    ``max_config_bytes`` what is read of its configuration, and ``budget`` the variables its configuration may
    build (``TooBigToBuild`` otherwise, before any is allocated: a configuration can ask for any size, whatever its
    weights file holds).
    """
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        if _CONFIG not in members:
            raise ValueError("it has no config.json")
        if members[_CONFIG].file_size > max_config_bytes:  # zipfile never reads past a member's declared size
            raise ValueError(f"its config.json is larger than {max_config_bytes} bytes")
        config = json.loads(archive.read(_CONFIG))
        config["compile_config"] = None
        # deserializing consumes parts of its config: the dry build gets a copy
        _check_build(lambda: keras.saving.deserialize_keras_object(copy.deepcopy(config), safe_mode=True), budget)
        if set(members) != _PLAIN:  # assets or another weights format: Keras's own loader
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        with _object_sharing():
            model = keras.saving.deserialize_keras_object(config, safe_mode=True)
        with tempfile.TemporaryDirectory(prefix="slotserve-weights-") as scratch:
            weights = Path(scratch) / _WEIGHTS
            _extract(archive, weights, max_weights_bytes)
            model.load_weights(weights)
    return model


def load_h5(path: Path, max_config_bytes: int, budget: int) -> Any:
    """The model in a legacy HDF5 file (``model.save("x.h5")``), with ``safe_mode=True`` and without compile state.

    h5py reads the file natively from its path, so no extraction is needed; the optimizer's weights stored beside
    the model's are never read with ``compile=False``. Its configuration is built once without allocating first,
    as for ``.keras`` archives.
    """
    with h5py.File(path, "r") as h5:
        if h5_config_bound(h5, path) > max_config_bytes:
            raise ValueError(f"its configuration is larger than {max_config_bytes} bytes")
        config = h5.attrs.get("model_config")
    if config is None:
        raise ValueError("it holds no model configuration")
    _check_build(lambda: _legacy_model_from_config(config), budget)
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def h5_config_bound(h5: h5py.File, path: Path) -> int:
    """An upper bound of an .h5 file's configuration size, without reading it: everything that is not dataset
    storage (a variable-length string attribute's length is only known by reading it)."""
    stored = 0

    def storage(_: str, obj: object) -> None:
        nonlocal stored
        if isinstance(obj, h5py.Dataset):
            stored += obj.id.get_storage_size()

    h5.visititems(storage)
    return max(path.stat().st_size - stored, 0)


def _check_build(build: Callable[[], Any], budget: int) -> None:
    """Build the model once inside a ``StatelessScope`` that leaves variables uninitialised (no memory), count the
    bytes its variables would take, and refuse it over ``budget``."""
    try:
        with keras.StatelessScope(initialize_variables=False), _object_sharing():
            model = build()
        needed = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.variables)
    finally:
        model = None
        _forget_uninitialized()
    if needed > budget:
        raise TooBigToBuild(needed, budget)


def _legacy_model_from_config(config: Any) -> Any:
    """What Keras's legacy .h5 loader builds from a configuration, with the same legacy and safe-mode scopes."""
    from keras.src.legacy.saving import json_utils, saving_options, saving_utils
    from keras.src.saving import serialization_lib

    text = config.decode("utf-8") if hasattr(config, "decode") else config
    with saving_options.keras_option_scope(use_legacy_config=True), serialization_lib.SafeModeScope(True):
        return saving_utils.model_from_config(json_utils.decode(text))


def _forget_uninitialized() -> None:
    """Drop the variables a dry build registered as waiting for initialisation (this thread's list in Keras), so
    nothing ever initialises them later."""
    from keras.src.backend.common import global_state

    global_state.set_global_attribute("uninitialized_variables", [])


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


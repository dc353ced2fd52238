"""What loading a store entry will hold, read from its files without loading it: the admission check's input.

Weights come from metadata (h5 datasets, a checkpoint index), graph constants and deny-listed ops from a
SavedModel's protobuf (``graph_check``), and the graph's own size from ``saved_model.pb`` or the Keras
``config.json``. Results are cached per file version (path, size, modification time), so a swap back to a known
model reads nothing. Configs and graphs larger than the caps are refused before they are read at all.
"""

import functools
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py

from app.errors import ModelInvalid, ModelTooLarge, SlotServeError
from app.registry.graph_check import inspect_saved_model
from app.registry.keras_files import h5_config_bound
from app.registry.savedmodel import SAVED_MODEL_FILE, checkpoint_index, variables_bytes
from app.registry.store import ModelFile

MAX_CONFIG_BYTES = 16 << 20  # a Keras model's config.json (or an .h5 file's model_config); real ones are KBs
_WEIGHTS_MEMBER = "model.weights.h5"
_CONFIG_MEMBER = "config.json"
_H5_WEIGHTS = "model_weights"  # a full-model .h5 keeps its weights here, its optimizer's in "optimizer_weights"


@dataclass(frozen=True)
class Footprint:
    """``weight_bytes`` of variables, ``constant_bytes`` of graph constants (SavedModel), ``graph_bytes`` of the
    graph or config itself, and the deny-listed ops a load or a prediction would run (SavedModel)."""

    weight_bytes: int
    constant_bytes: int = 0
    graph_bytes: int = 0
    denied_ops: tuple[str, ...] = ()

    @property
    def tensor_bytes(self) -> int:
        """What stays resident as tensors in the slot: variables and constants."""
        return self.weight_bytes + self.constant_bytes


def footprint(model: ModelFile, max_graph_bytes: int) -> Footprint:
    """The model's footprint; ``ModelInvalid`` when its files cannot be read as its format, ``ModelTooLarge`` when
    its graph alone is over ``max_graph_bytes`` (checked before the graph is read)."""
    if model.format == "savedmodel":
        graph = model.path / SAVED_MODEL_FILE
        if graph.stat().st_size > max_graph_bytes:
            raise ModelTooLarge(f"Model '{model.name}' has a {graph.stat().st_size}-byte graph; a slot holds "
                                f"{max_graph_bytes} bytes.", model=model.name, needed_bytes=graph.stat().st_size,
                                limit_bytes=max_graph_bytes)
        stamp = _stamp(graph), _stamp(checkpoint_index(model.path))
    else:
        stamp = _stamp(model.path), (0, 0)
    return _cached(model.name, model.path, model.format, stamp)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return -1, -1
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=1024)
def _cached(name: str, path: Path, fmt: str, stamp: tuple) -> Footprint:
    try:
        if fmt == "savedmodel":
            report = inspect_saved_model(path)
            return Footprint(variables_bytes(path), report.constant_bytes,
                             (path / SAVED_MODEL_FILE).stat().st_size, report.denied)
        if fmt == "h5":
            return _h5(name, path)
        return _keras(name, path)
    except SlotServeError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile, h5py, protobuf and TensorFlow raise many kinds
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    kind = {"savedmodel": "a SavedModel", "h5": "a Keras .h5 file"}.get(fmt, "a Keras archive")
    raise ModelInvalid(f"Model '{name}' cannot be read as {kind}: {reason}.", model=name)


def _keras(name: str, path: Path) -> Footprint:
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        config = members.get(_CONFIG_MEMBER)
        config_bytes = config.file_size if config else 0  # zipfile never reads past a member's declared size
        _check_config(name, config_bytes)
        if _WEIGHTS_MEMBER not in members:
            # no weights (none at all, or another weights format such as .npz): their members' declared sizes
            others = sum(info.file_size for member, info in members.items() if member.startswith("model.weights"))
            return Footprint(others, graph_bytes=config_bytes)
        with archive.open(_WEIGHTS_MEMBER) as member:
            # Keras stores the member uncompressed, so h5py seeks through it and reads only metadata
            source = member if member.seekable() else io.BytesIO(member.read())
            with h5py.File(source, "r") as h5:
                # optimizer state is saved beside the weights but never loaded (the server loads compile=False)
                weights = sum(_dataset_bytes(h5[key]) for key in h5 if key != "optimizer")
    return Footprint(weights, graph_bytes=config_bytes)


def _h5(name: str, path: Path) -> Footprint:
    with h5py.File(path, "r") as h5:
        config_bytes = h5_config_bound(h5, path)
        _check_config(name, config_bytes)
        # optimizer state ("optimizer_weights") is saved beside the weights but never loaded (compile=False)
        weights = _dataset_bytes(h5[_H5_WEIGHTS]) if _H5_WEIGHTS in h5 else 0
    return Footprint(weights, graph_bytes=config_bytes)


def _check_config(name: str, size: int) -> None:
    if size > MAX_CONFIG_BYTES:
        raise ModelInvalid(f"Model '{name}' has a {size}-byte configuration; the server reads at most "
                           f"{MAX_CONFIG_BYTES} bytes of one.", model=name)


def _dataset_bytes(group: h5py.Group | h5py.Dataset) -> int:
    if isinstance(group, h5py.Dataset):
        return group.size * group.dtype.itemsize
    total = 0

    def visit(_: str, obj: object) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            total += obj.size * obj.dtype.itemsize

    group.visititems(visit)
    return total

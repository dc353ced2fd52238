"""The model store: a directory of models, each named by its file or directory name (a name is never a path).

Three formats: ``<name>.keras`` archives, legacy ``<name>.h5`` Keras files, and SavedModel directories, either in
TF Serving's layout (``<name>/<version>/saved_model.pb``, numeric versions, the highest served unless one is asked
for) or plain (``<name>/saved_model.pb``). When one name has several, the first of that order wins.
"""

import functools
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py

from app.errors import InvalidRequest, ModelInvalid, ModelNotFound
from app.names import is_valid_name
from app.registry.savedmodel import checkpoint_index, is_saved_model, variables_bytes

FORMATS = {".keras": "keras", ".h5": "h5"}
_WEIGHTS_MEMBER = "model.weights.h5"
_H5_WEIGHTS = "model_weights"  # a full-model .h5 keeps its weights here, its optimizer's in "optimizer_weights"


@dataclass(frozen=True)
class ModelFile:
    """A model in the store. ``path`` is a file, or a SavedModel directory (the served version's, if versioned).

    ``version`` is the served version of a versioned SavedModel (``None`` for every other layout) and
    ``versions`` every version on disk, ascending.
    """

    name: str
    path: Path
    format: str
    size_bytes: int
    version: int | None = None
    versions: tuple[int, ...] = ()


class ModelStore:
    """Names -> models in one directory. A name is never a path, and a version is digits only."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def list(self) -> list[ModelFile]:
        """Every model in the store, sorted by name (one entry per name: the one ``resolve`` finds)."""
        if not self.root.is_dir():
            return []
        names = sorted({p.stem if p.is_file() else p.name for p in self.root.iterdir()})
        found = []
        for name in names:
            if is_valid_name(name) and (model := self._find(name)) is not None:
                found.append(model)
        return found

    def resolve(self, name: str, version: int | str | None = None) -> ModelFile:
        """The model called ``name`` (``version`` of a versioned SavedModel, else its highest).

        ``InvalidRequest`` for a name that is not a plain name or a version that is not digits; ``ModelNotFound``
        when there is no such model or no such version of it.
        """
        if not is_valid_name(name):
            raise InvalidRequest(f"'{name}' is not a valid model name: use letters, digits, '.', '_' and '-' only.")
        if version is not None and not str(version).isdigit():
            raise InvalidRequest(f"'{version}' is not a valid model version: use digits only.")
        model = self._find(name, None if version is None else int(version))
        if model is None:
            raise ModelNotFound(f"There is no model called '{name}' in the model store.", model=name)
        if version is not None and model.version != int(version):
            raise ModelNotFound(f"Model '{name}' has no version {int(version)} in the model store "
                                f"(versions: {list(model.versions) or 'none, it is not versioned'}).",
                                model=name, version=str(int(version)))
        return model

    def _find(self, name: str, version: int | None = None) -> ModelFile | None:
        for suffix, fmt in FORMATS.items():
            path = self.root / f"{name}{suffix}"
            if path.is_file():
                return ModelFile(name, path, fmt, path.stat().st_size)
        directory = self.root / name
        if not directory.is_dir():
            return None
        versions = tuple(sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and is_saved_model(p)))
        if versions:
            served = version if version in versions else versions[-1]
            path = directory / str(served)
            return ModelFile(name, path, "savedmodel", _tree_bytes(path), served, versions)
        if is_saved_model(directory):
            return ModelFile(name, directory, "savedmodel", _tree_bytes(directory))
        return None


def _tree_bytes(directory: Path) -> int:
    """Total bytes of the files under ``directory`` (a SavedModel's graph, variables and assets)."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def weight_bytes(model: ModelFile) -> int:
    """Bytes of every weight array the model stores, read from metadata without loading the model.

    Cached per file version (path, size, modification time): a swap back to a known model reads nothing.
    Raises ``ModelInvalid`` when the file cannot be read as its format.
    """
    source = checkpoint_index(model.path) if model.format == "savedmodel" else model.path
    stat = source.stat() if source.exists() else None
    return _weight_bytes(model.name, model.path, model.format, stat.st_size if stat else -1,
                         stat.st_mtime_ns if stat else -1)


@functools.lru_cache(maxsize=1024)
def _weight_bytes(name: str, path: Path, fmt: str, size: int, mtime_ns: int) -> int:
    try:
        if fmt == "savedmodel":
            return variables_bytes(path)
        if fmt == "h5":
            with h5py.File(path, "r") as h5:
                # optimizer state ("optimizer_weights") is saved beside the weights but never loaded (compile=False)
                return _dataset_bytes(h5[_H5_WEIGHTS]) if _H5_WEIGHTS in h5 else 0
        with zipfile.ZipFile(path) as archive:
            if _WEIGHTS_MEMBER not in archive.namelist():
                return 0  # a model with no weights at all
            with archive.open(_WEIGHTS_MEMBER) as member:
                # Keras stores the member uncompressed, so h5py seeks through it and reads only metadata
                source = member if member.seekable() else io.BytesIO(member.read())
                with h5py.File(source, "r") as h5:
                    # optimizer state is saved beside the weights but never loaded (the server loads compile=False)
                    return sum(_dataset_bytes(h5[key]) for key in h5 if key != "optimizer")
    except Exception as exc:  # noqa: BLE001 - zipfile, h5py and TensorFlow raise many kinds (zlib.error, ...)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    kind = {"savedmodel": "a SavedModel", "h5": "a Keras .h5 file"}.get(fmt, "a Keras archive")
    raise ModelInvalid(f"Model '{name}' cannot be read as {kind}: {reason}.", model=name)


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

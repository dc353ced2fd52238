"""The model store: a directory whose files are models, named by their file name without the extension."""

import functools
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py

from app.errors import InvalidRequest, ModelInvalid, ModelNotFound
from app.names import is_valid_name

FORMATS = {".keras": "keras"}
_WEIGHTS_MEMBER = "model.weights.h5"


@dataclass(frozen=True)
class ModelFile:
    """A model in the store."""

    name: str
    path: Path
    format: str
    size_bytes: int


class ModelStore:
    """Names -> files in one directory. A name is never a path."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def list(self) -> list[ModelFile]:
        """Every model in the store, sorted by name."""
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.iterdir()):
            fmt = FORMATS.get(path.suffix)
            if fmt and path.is_file() and is_valid_name(path.stem):
                found.append(ModelFile(path.stem, path, fmt, path.stat().st_size))
        return found

    def resolve(self, name: str) -> ModelFile:
        """The model called ``name``; ``InvalidRequest`` for a name that is not a plain name."""
        if not is_valid_name(name):
            raise InvalidRequest(f"'{name}' is not a valid model name: use letters, digits, '.', '_' and '-' only.")
        for suffix, fmt in FORMATS.items():
            path = self.root / f"{name}{suffix}"
            if path.is_file():
                return ModelFile(name, path, fmt, path.stat().st_size)
        raise ModelNotFound(f"There is no model called '{name}' in the model store.", model=name)


def weight_bytes(model: ModelFile) -> int:
    """Bytes of every weight array stored in the file, read from its metadata without loading the model.

    Cached per file version (path, size, modification time): a swap back to a known model reads nothing.
    Raises ``ModelInvalid`` when the file is not a readable Keras archive.
    """
    stat = model.path.stat()
    return _weight_bytes(model.name, model.path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _weight_bytes(name: str, path: Path, size: int, mtime_ns: int) -> int:
    try:
        with zipfile.ZipFile(path) as archive:
            if _WEIGHTS_MEMBER not in archive.namelist():
                return 0  # a model with no weights at all
            with archive.open(_WEIGHTS_MEMBER) as member:
                # Keras stores the member uncompressed, so h5py seeks through it and reads only metadata
                source = member if member.seekable() else io.BytesIO(member.read())
                with h5py.File(source, "r") as h5:
                    # optimizer state is saved beside the weights but never loaded (the server loads compile=False)
                    return sum(_dataset_bytes(h5[key]) for key in h5 if key != "optimizer")
    except Exception as exc:  # noqa: BLE001 - zipfile and h5py raise many kinds (zlib.error, EOFError, ...)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    raise ModelInvalid(f"Model '{name}' cannot be read as a Keras archive: {reason}.", model=name)


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

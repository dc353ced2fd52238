"""The model store: a directory of models, each named by its file or directory name (a name is never a path).

Three formats: ``<name>.keras`` archives, legacy ``<name>.h5`` Keras files, and SavedModel directories, either in
TF Serving's layout (``<name>/<version>/saved_model.pb``, ASCII-digit versions, the highest served unless one is
asked for) or plain (``<name>/saved_model.pb``). When one name has several, the first of that order wins.

Nothing here walks a model's files: finding a model costs a few ``stat`` calls (a SavedModel's size is its graph
and its variables, never its assets), and the listing is cached until the directory changes or a second passes.
Call ``list`` off the event loop all the same: a store on a slow disk is still a disk.
"""

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app.errors import InvalidRequest, ModelNotFound
from app.names import is_valid_name, parse_version, version_directory
from app.registry.savedmodel import SAVED_MODEL_FILE, is_saved_model

FORMATS = {".keras": "keras", ".h5": "h5"}
LISTING_TTL_S = 1.0  # a file rewritten in place (same directory entry) shows its new size within this long


@dataclass(frozen=True)
class ModelFile:
    """A model in the store. ``path`` is a file, or a SavedModel directory (the served version's, if versioned).

    ``version`` is the served version of a versioned SavedModel (``None`` for every other layout) and
    ``versions`` every version on disk, ascending. ``size_bytes`` is the file's size, or a SavedModel's
    ``saved_model.pb`` plus its ``variables/`` files.
    """

    name: str
    path: Path
    format: str
    size_bytes: int
    version: int | None = None
    versions: tuple[int, ...] = ()


class ModelStore:
    """Names -> models in one directory. A name is never a path, and a version is ASCII digits only."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._listing: tuple[tuple[int, float], list[ModelFile]] | None = None

    def list(self) -> list[ModelFile]:
        """Every model in the store, sorted by name (one entry per name: the one ``resolve`` finds)."""
        with self._lock:
            try:
                changed = self.root.stat().st_mtime_ns
            except OSError:
                return []
            if self._listing is not None:
                (stamp, at), models = self._listing
                if stamp == changed and time.monotonic() - at < LISTING_TTL_S:
                    return models
            names = sorted({p.stem if p.is_file() else p.name for p in self.root.iterdir()})
            models = [model for name in names if is_valid_name(name) and (model := self._find(name)) is not None]
            self._listing = ((changed, time.monotonic()), models)
            return models

    def has(self, name: str) -> bool:
        """Whether ``name`` is a model in the store (a few ``stat`` calls; no listing)."""
        return is_valid_name(name) and self._find(name) is not None

    def resolve(self, name: str, version: int | str | None = None) -> ModelFile:
        """The model called ``name`` (``version`` of a versioned SavedModel, else its highest).

        ``InvalidRequest`` for a name that is not a plain name or a version that is not ASCII digits;
        ``ModelNotFound`` when there is no such model or no such version of it.
        """
        if not is_valid_name(name):
            raise InvalidRequest(f"'{name}' is not a valid model name: use letters, digits, '.', '_' and '-' only.")
        wanted = None if version is None else parse_version(str(version))
        if version is not None and wanted is None:
            raise InvalidRequest("A model version is 1-18 ASCII digits.")
        model = self._find(name, wanted)
        if model is None:
            raise ModelNotFound(f"There is no model called '{name}' in the model store.", model=name)
        if wanted is not None and model.version != wanted:
            raise ModelNotFound(f"Model '{name}' has no version {wanted} in the model store "
                                f"(versions: {list(model.versions) or 'none, it is not versioned'}).",
                                model=name, version=str(wanted))
        return model

    def _find(self, name: str, version: int | None = None) -> ModelFile | None:
        for suffix, fmt in FORMATS.items():
            path = self.root / f"{name}{suffix}"
            if path.is_file():
                return ModelFile(name, path, fmt, path.stat().st_size)
        directory = self.root / name
        if not directory.is_dir():
            return None
        versions = tuple(sorted(v for p in directory.iterdir() if (v := version_directory(p.name)) is not None
                                and is_saved_model(p)))
        if versions:
            served = version if version in versions else versions[-1]
            path = directory / str(served)
            return ModelFile(name, path, "savedmodel", saved_model_bytes(path), served, versions)
        if is_saved_model(directory):
            return ModelFile(name, directory, "savedmodel", saved_model_bytes(directory))
        return None


def saved_model_bytes(directory: Path) -> int:
    """A SavedModel's graph and variables on disk (``saved_model.pb`` and the files of ``variables/``); assets,
    however many, are not walked."""
    total = (directory / SAVED_MODEL_FILE).stat().st_size
    variables = directory / "variables"
    if variables.is_dir():
        total += sum(p.stat().st_size for p in variables.iterdir() if p.is_file())
    return total

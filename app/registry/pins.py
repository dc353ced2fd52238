"""Private snapshots of model files: what a slot loaded stays exactly what a rollback or a restore loads again.

A load first pins its store entry: the file (or a SavedModel directory, file by file) is copied into this process's
pin directory, or hard-linked when it is larger than ``COPY_MAX_BYTES`` (a copy of a multi-GB model would cost more
than it protects; a link still survives the store entry being deleted or replaced by a rename, but not being
rewritten in place). Admission reads the pinned bytes and the slot loads them, so an operator editing the store in
between changes nothing; a ``replace`` swap that fails reloads the old model from its pin, not from the store. The
pin goes when its model is freed. The directory is per registry; directories of processes that no longer exist are
removed when a new one starts.
"""

import os
import shutil
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path

from app.registry.store import ModelFile

COPY_MAX_BYTES = 256 << 20
_PREFIX = "slotserve-pins-"


class Pins:
    """This process's pinned model files."""

    def __init__(self, root: Path | None = None) -> None:
        base = Path(root) if root is not None else Path(tempfile.gettempdir())
        _remove_stale(base)
        self.root = base / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"  # one per registry
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def pin(self, model: ModelFile) -> ModelFile:
        """A snapshot of ``model`` (same name, version and format; ``path`` inside the pin directory)."""
        target = self.root / uuid.uuid4().hex / model.path.name
        target.parent.mkdir()
        try:
            if model.path.is_dir():
                shutil.copytree(model.path, target, copy_function=_link_or_copy)
            else:
                _link_or_copy(model.path, target)
        except BaseException:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise
        return replace(model, path=target)

    def unpin(self, model: ModelFile) -> None:
        """Forget a snapshot ``pin`` made (anything else is left alone)."""
        holder = model.path.parent
        if holder.parent == self.root:
            shutil.rmtree(holder, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    if os.path.getsize(source) > COPY_MAX_BYTES:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links not allowed: copy after all
            pass
    shutil.copyfile(source, target)


def _remove_stale(base: Path) -> None:
    """Remove pin directories whose process is gone (a ``kill -9`` leaves its pins behind)."""
    for directory in base.glob(f"{_PREFIX}*"):
        pid = directory.name.removeprefix(_PREFIX).split("-")[0]
        if pid.isascii() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True

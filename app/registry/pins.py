"""Private snapshots of model files: what a slot loaded stays exactly what a rollback or a restore loads again.

A load first pins its store entry: the file (or a SavedModel directory, file by file) is copied into this process's
pin directory, or hard-linked when it is larger than ``COPY_MAX_BYTES`` (a copy of a multi-GB model would cost more
than it protects; a link still survives the store entry being deleted or replaced by a rename, but not being
rewritten in place). Admission reads the pinned bytes and the slot loads them, so an operator editing the store in
between changes nothing; a ``replace`` swap that fails reloads the old model from its pin, not from the store. The
pin goes when its model is freed. The directory is per registry and holds a lock (``flock``) for as long as the
registry lives; a directory whose lock nobody holds was left by a process that died (a ``kill -9``), and is removed
when a new one starts. A lock, not a pid: in a container every start has the same pid.
"""

import fcntl
import os
import shutil
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path

from app.registry.store import ModelFile

COPY_MAX_BYTES = 256 << 20
_PREFIX = "slotserve-pins-"
_LOCK = ".lock"


class Pins:
    """This process's pinned model files."""

    def __init__(self, root: Path | None = None) -> None:
        base = Path(root) if root is not None else Path(tempfile.gettempdir())
        _remove_stale(base)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # one per registry
        staging = base / f".staging-{name}"  # locked before it gets the name another start would judge
        staging.mkdir(mode=0o700, parents=True)
        self._lock = os.open(staging / _LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until close (or the process's end)
        self.root = staging.rename(base / f"{_PREFIX}{name}")

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
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    if os.path.getsize(source) > COPY_MAX_BYTES:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links not allowed: copy after all
            pass
    shutil.copyfile(source, target)


def _remove_stale(base: Path) -> None:
    """Remove pin directories no live registry holds (a ``kill -9`` leaves its pins behind)."""
    for directory in base.glob(f"{_PREFIX}*"):
        try:
            fd = os.open(directory / _LOCK, os.O_RDWR)
        except OSError:
            continue  # not ours to judge (no lock file, or someone else's)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live registry holds it
        finally:
            os.close(fd)  # (closing also drops a lock just taken)
        shutil.rmtree(directory, ignore_errors=True)

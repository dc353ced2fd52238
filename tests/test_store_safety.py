"""A user's models are safe from the project's own commands: ``make clean`` and ``make serve``'s demo models.

``make clean`` is run for real, on a copy of the Makefile in a scratch directory that has a model store and a
state file next to the artefacts; ``slotserve demo-models`` is run twice over a store that already holds models
of the demo names in each format the store reads.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.process import run

ROOT = Path(__file__).resolve().parent.parent
DEMO_NAMES = {"tiny", "iris", "mnist", "medium", "pair"}


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: its bytes and its modification time."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_demo_models_never_overwrite_a_model_of_the_same_name(tmp_path: Path) -> None:
    store = tmp_path / "models"
    store.mkdir()
    (store / "tiny.keras").write_bytes(b"the user's own tiny model, not a demo")
    (store / "iris.h5").write_bytes(b"a legacy h5 model: a demo iris.keras would win the name over it")
    (store / "mnist" / "1").mkdir(parents=True)
    (store / "mnist" / "1" / "saved_model.pb").write_bytes(b"a versioned SavedModel")
    users = snapshot(store)

    first = run("demo-models", str(store))
    assert first.returncode == 0, first.stderr
    assert snapshot(store).items() >= users.items()  # every user file byte for byte, and untouched
    assert {p.stem for p in store.glob("*.keras")} == {"tiny", "medium", "pair"}
    assert not (store / "iris.keras").exists() and not (store / "mnist.keras").exists()
    for name, kept in (("tiny", "tiny.keras"), ("iris", "iris.h5"), ("mnist", "mnist")):
        assert any(line.startswith(f"kept {store / kept}:") and "never overwritten" in line
                   for line in first.stdout.splitlines()), first.stdout
    assert sum(line.startswith("wrote ") for line in first.stdout.splitlines()) == 2
    after_first = snapshot(store)

    second = run("demo-models", str(store))
    assert second.returncode == 0, second.stderr
    assert snapshot(store) == after_first  # the demo models it wrote itself are not rewritten either
    assert not any(line.startswith("wrote ") for line in second.stdout.splitlines())
    assert sum(line.startswith("kept ") for line in second.stdout.splitlines()) == len(DEMO_NAMES)
    assert sorted(p.name for p in store.iterdir() if p.name.startswith(".")) == []  # no scratch left behind


def test_demo_models_write_all_five_into_an_empty_store(tmp_path: Path) -> None:
    done = run("demo-models", str(tmp_path / "new"))
    assert done.returncode == 0, done.stderr
    assert {p.stem for p in (tmp_path / "new").glob("*.keras")} == DEMO_NAMES
    assert all(line.startswith("wrote ") for line in done.stdout.splitlines())


def make(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-f", str(directory / "Makefile"), *args],
                          cwd=directory, capture_output=True, text=True, timeout=60)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The Makefile in a scratch tree with a model store, a state file and the artefacts ``clean`` is for."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for store in ("models", "mystore"):
        (tmp_path / store).mkdir()
        (tmp_path / store / "tiny.keras").write_bytes(b"model")
    (tmp_path / "slotserve.db").write_bytes(b"keys")
    for artefact in (".venv/bin", ".pytest_cache", "build/lib", "dist", "slotserve.egg-info"):
        (tmp_path / artefact).mkdir(parents=True)
        (tmp_path / artefact / "f").write_bytes(b"x")
    return tmp_path


@pytest.mark.parametrize("store", ["models", "mystore"])
def test_make_clean_removes_artefacts_and_never_the_model_store(checkout: Path, store: str) -> None:
    done = make(checkout, "clean", f"MODELS={store}")
    assert done.returncode == 0, done.stderr
    for kept in ("models/tiny.keras", "mystore/tiny.keras", "slotserve.db", "Makefile"):
        assert (checkout / kept).is_file(), f"make clean deleted {kept}"
    for gone in (".venv", ".pytest_cache", "build", "dist", "slotserve.egg-info"):
        assert not (checkout / gone).exists(), f"make clean left {gone}"


def test_make_serve_writes_demo_models_into_the_store_it_serves(checkout: Path) -> None:
    (checkout / "pyproject.toml").write_text("")
    (checkout / ".venv" / ".installed").write_text("")  # installed after pyproject.toml: no install step planned
    done = make(checkout, "-n", "serve", "MODELS=mystore")
    assert done.returncode == 0, done.stderr
    planned = done.stdout.splitlines()
    assert planned[-2:] == [".venv/bin/slotserve demo-models mystore", ".venv/bin/slotserve serve --model-dir mystore"]

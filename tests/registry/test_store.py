"""The model store: names are names, never paths; footprints are read from the file."""

from pathlib import Path

import pytest

from app.errors import InvalidRequest, ModelInvalid, ModelNotFound
from app.registry import ModelStore
from app.registry.footprint import footprint
from tests.models import Reference


@pytest.mark.parametrize("name", ["..", "../tiny", "/etc/passwd", "a/b", ".hidden", "", "x" * 65, "tiny.keras/.."])
def test_a_name_is_never_a_path(model_dir: Path, refs, name: str) -> None:
    with pytest.raises(InvalidRequest):
        ModelStore(model_dir).resolve(name)


def test_resolve_and_list(model_dir: Path, refs: dict[str, Reference]) -> None:
    store = ModelStore(model_dir)
    assert store.resolve("tiny").path == refs["tiny"].path
    with pytest.raises(ModelNotFound):
        store.resolve("notes")  # a .txt file is not a model
    names = [m.name for m in store.list()]
    assert names == sorted(names) and "corrupt" in names and "notes" not in names


def test_footprint_is_read_from_the_weights_without_loading(model_dir: Path, refs: dict[str, Reference]) -> None:
    store = ModelStore(model_dir)
    for name in ("tiny", "pair", "nine_mb", "big"):
        needs = footprint(store.resolve(name), max_graph_bytes=1 << 30)
        assert needs.weight_bytes == refs[name].weight_bytes and needs.constant_bytes == 0
        assert 0 < needs.graph_bytes < 64 << 10  # its config.json
    with pytest.raises(ModelInvalid):
        footprint(store.resolve("corrupt"), max_graph_bytes=1 << 30)


def test_a_missing_store_is_empty(tmp_path: Path) -> None:
    assert ModelStore(tmp_path / "absent").list() == []

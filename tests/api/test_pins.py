"""Pinned model files: a rollback loads exactly the bytes that were serving, whatever happened to the store since;
pins go with their models."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.settings import Settings
from tests.conftest import open_server
from tests.helpers import TOLERANCE
from tests.models import Reference

pytestmark = pytest.mark.anyio


@pytest.fixture
def private_settings(settings: Settings, refs: dict[str, Reference], tmp_path: Path) -> Settings:
    store = tmp_path / "models"
    store.mkdir()
    for name in ("nine_mb", "nine_mb_b", "four_mb"):
        shutil.copy(refs[name].path, store / f"{name}.keras")
    shutil.copy(Path(refs["nine_mb"].path).parent / "lying.keras", store / "lying.keras")
    return settings.model_copy(update={"model_dir": store})


@pytest.mark.parametrize("meddle", ["rewritten", "deleted"])
async def test_a_rollback_loads_the_pinned_bytes_not_the_store(private_settings: Settings,
                                                              refs: dict[str, Reference], meddle: str) -> None:
    store = private_settings.model_dir
    rows = {"instances": refs["nine_mb"].inputs["x"].tolist()}
    async with open_server(private_settings) as server:
        assert (await server.http.put("/v1/clients/c/model", json={"model": "nine_mb"})).status_code == 200
        if meddle == "rewritten":  # same name, other weights, written in place
            (store / "nine_mb.keras").write_bytes((store / "nine_mb_b.keras").read_bytes())
        else:
            (store / "nine_mb.keras").unlink()
        failed = await server.http.put("/v1/clients/c/model", json={"model": "lying"})  # a replace that fails
        assert failed.status_code == 507 and failed.json()["error"]["serving"] == "nine_mb"
        got = np.asarray((await server.http.post("/v1/clients/c/predict", json=rows)).json()["predictions"])
        np.testing.assert_allclose(got, refs["nine_mb"].outputs["y"], atol=TOLERANCE, rtol=0)
        assert not np.allclose(got, refs["nine_mb_b"].outputs["y"], atol=TOLERANCE, rtol=0)


async def test_pins_go_with_their_models(private_settings: Settings) -> None:
    async with open_server(private_settings) as server:
        pins = server.registry.pins.root
        assert (await server.http.put("/v1/clients/c/model", json={"model": "nine_mb"})).status_code == 200
        assert (await server.http.put("/v1/clients/d/model", json={"model": "four_mb"})).status_code == 200
        assert sorted(p.name for p in pins.glob("*/*")) == ["four_mb.keras", "nine_mb.keras"]
        assert (await server.http.put("/v1/clients/c/model", json={"model": "nine_mb_b"})).status_code == 200
        assert (await server.http.put("/v1/clients/d/model", json={"model": "lying"})).status_code == 507
        assert sorted(p.name for p in pins.glob("*/*")) == ["four_mb.keras", "nine_mb_b.keras"]
        assert (await server.http.delete("/v1/clients/c/model")).status_code == 200
        assert [p.name for p in pins.glob("*/*")] == ["four_mb.keras"]
    assert not pins.exists()  # the directory goes with the registry


def test_pins_left_by_a_dead_process_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    """Judged by the directory's lock, not by a pid (a container's server has the same pid at every start)."""
    from app.registry.pins import Pins

    live = Pins(tmp_path)
    dead = tmp_path / f"slotserve-pins-{os.getpid()}-deadbeef"  # same pid as this live process: a restarted container
    (dead / "x").mkdir(parents=True)
    (dead / ".lock").touch()
    (dead / "x" / "m.keras").write_bytes(b"left behind")
    Pins(tmp_path).close()
    assert not dead.exists() and live.root.exists()
    live.close()
    assert not live.root.exists()

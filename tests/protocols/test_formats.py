"""SavedModel directories (both layouts) and legacy .h5 files: store, admission figures, serving, exact freeing."""

import gc
from pathlib import Path

import numpy as np
import pytest

from app.errors import InvalidInput, InvalidRequest, ModelInvalid, ModelNotFound
from app.partitions import SlotSpec, host_allocator_bytes
from app.registry import ModelStore
from app.registry.footprint import footprint
from app.registry.servable import load_servable
from tests.conftest import Server
from tests.helpers import TOLERANCE, assert_columns_match, assert_rows_match, columns_body, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio


def test_store_lists_and_resolves_every_format(format_store: tuple[Path, dict[str, Reference]]) -> None:
    directory, _ = format_store
    store = ModelStore(directory)
    listed = {m.name: m for m in store.list()}
    assert {n: m.format for n, m in listed.items()} == {  # not empty_dir: it holds no model
        "broken": "savedmodel", "flat12": "savedmodel", "half_plus_three": "savedmodel", "legacy": "h5",
        "odd_outputs": "savedmodel", "pair_h5": "h5", "signals": "savedmodel", "unsafe": "h5"}
    served = directory / "signals" / "2"  # TF Serving's layout: the highest version unless one is asked for
    assert listed["signals"].path == served and listed["signals"].version == 2 and listed["signals"].versions == (1, 2)
    on_disk = [served / "saved_model.pb", *(served / "variables").iterdir()]  # graph and variables, never assets
    assert listed["signals"].size_bytes == sum(p.stat().st_size for p in on_disk)
    assert listed["flat12"].path == directory / "flat12" and listed["flat12"].version is None  # the plain layout
    assert listed["legacy"].size_bytes == (directory / "legacy.h5").stat().st_size
    assert store.resolve("signals").version == 2
    assert store.resolve("signals", 1).path == directory / "signals" / "1"
    assert store.resolve("signals", "01").version == 1
    with pytest.raises(ModelNotFound, match="no version 3"):
        store.resolve("signals", 3)
    with pytest.raises(ModelNotFound):
        store.resolve("flat12", 1)  # a plain SavedModel has no versions on disk
    with pytest.raises(ModelNotFound):
        store.resolve("empty_dir")
    for name, version in (("signals/1", None), ("..", None), ("signals", "../1"), ("signals", "-1"), ("signals", "x")):
        with pytest.raises(InvalidRequest):
            store.resolve(name, version)


def test_admission_figures_come_from_the_files(format_store: tuple[Path, dict[str, Reference]]) -> None:
    directory, refs = format_store
    store = ModelStore(directory)
    # SavedModel: the checkpoint index's variables; .h5: the model's weight datasets, never the optimizer's
    def weight_bytes(name: str) -> int:
        return footprint(store.resolve(name), max_graph_bytes=1 << 30).weight_bytes

    assert weight_bytes("signals") == refs["signals_v2"].weight_bytes
    assert weight_bytes("flat12") == refs["flat12"].weight_bytes
    assert weight_bytes("half_plus_three") == 0
    assert weight_bytes("legacy") == refs["legacy"].weight_bytes
    assert weight_bytes("pair_h5") == refs["pair_h5"].weight_bytes
    with pytest.raises(ModelInvalid, match="cannot be read as a SavedModel"):
        weight_bytes("broken")


def test_an_explicit_version_serves_that_version(format_store: tuple[Path, dict[str, Reference]],
                                                 specs: tuple[SlotSpec, ...]) -> None:
    directory, refs = format_store
    store = ModelStore(directory)
    for version in (1, 2):
        servable = load_servable(store.resolve("signals", version), specs[-1].device, max_file_bytes=1 << 30,
                                 budget=1 << 30)
        try:
            ref = refs[f"signals_v{version}"]
            for name, got in servable(ref.inputs).items():
                np.testing.assert_allclose(got, ref.outputs[name], atol=TOLERANCE, rtol=0)
            for variable in servable.variables:
                assert variable.device.endswith(specs[-1].device.removeprefix("/")), variable.device
        finally:
            servable.close()
    gc.collect()


async def test_savedmodel_serves_on_its_slot_with_every_signature(format_server: Server,
                                                                  format_refs: dict[str, Reference]) -> None:
    registry = format_server.registry
    await registry.load("first", "flat12")  # takes slot 0, so the next client lands on another device
    result = await registry.load("sm", "signals")
    slot = registry.slots[result.record.slot]
    assert slot.index != 0
    for variable in slot.model.variables:
        assert variable.device.endswith(slot.spec.device.removeprefix("/")), variable.device
    outputs = await slot.infer(slot.model.run, format_refs["signals_v2"].inputs)
    for name, tensor in outputs.items():
        assert tensor.device.endswith(slot.spec.device.removeprefix("/")), tensor.device
        np.testing.assert_allclose(tensor.numpy(), format_refs["signals_v2"].outputs[name], atol=TOLERANCE, rtol=0)
    view = await registry.view("sm", model="signals")
    assert list(view.signatures) == ["serving_default", "embed"] and view.version == 2
    assert [i.name for i in view.inputs] == ["sensor", "signal"] and [o.name for o in view.outputs] == ["probs", "score"]

    def decode(chosen):
        return {i.name: format_refs["signals_v2"].inputs[i.name] for i in chosen.inputs}

    embed_view, embedded = await registry.run("sm", decode, model="signals", signature="embed")
    assert [o.name for o in embed_view.outputs] == ["hidden"]
    np.testing.assert_allclose(embedded["hidden"], format_refs["signals_v2_embed"].outputs["hidden"],
                               atol=TOLERANCE, rtol=0)
    with pytest.raises(InvalidInput, match="no signature 'nope'.*'embed', 'serving_default'"):
        await registry.run("sm", decode, signature="nope")


@pytest.mark.parametrize("model,ref", [("signals", "signals_v2"), ("flat12", "flat12"), ("legacy", "legacy"),
                                       ("pair_h5", "pair_h5")])
async def test_native_api_serves_and_frees_every_format_exactly(format_server: Server, format_refs: dict[str, Reference],
                                                                model: str, ref: str) -> None:
    gc.collect()
    host_before = host_allocator_bytes()
    reference = format_refs[ref]
    loaded = await format_server.http.put("/v1/clients/c/model", json={"model": model})
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["memory"]["in_use_bytes"] == reference.weight_bytes
    rows = await format_server.http.post("/v1/clients/c/predict", json=rows_body(reference))
    assert rows.status_code == 200, rows.text
    assert_rows_match(rows.json(), reference)
    columns = await format_server.http.post("/v1/clients/c/predict", json=columns_body(reference))
    assert_columns_match(columns.json(), reference)
    # swap to a .keras-free model of the other family and back: each swap frees the old model exactly
    other = "legacy" if model != "legacy" else "signals"
    response = await format_server.http.put("/v1/clients/c/model", json={"model": other})
    assert response.status_code == 200, response.text
    swapped = response.json()
    assert swapped["freed_bytes"] == reference.weight_bytes and swapped["residue_bytes"] == 0
    unloaded = (await format_server.http.delete("/v1/clients/c/model")).json()
    assert unloaded["residue_bytes"] == 0 and unloaded["memory"]["in_use_bytes"] == 0
    assert unloaded["freed_bytes"] == swapped["memory"]["in_use_bytes"]
    slots = (await format_server.http.get("/v1/slots")).json()["slots"]
    assert all(s["residue_bytes"] == 0 and s["memory"]["in_use_bytes"] == 0 for s in slots)
    gc.collect()
    assert host_allocator_bytes() == host_before  # every byte the slot took came back to the host allocator


async def test_native_listing_and_a_broken_savedmodel(format_server: Server, format_store) -> None:
    directory, _ = format_store
    models = {m["name"]: m for m in (await format_server.http.get("/v1/models")).json()["models"]}
    assert models["signals"] == {"name": "signals", "format": "savedmodel",
                                 "size_bytes": ModelStore(directory).resolve("signals").size_bytes}
    assert models["legacy"]["format"] == "h5"
    response = await format_server.http.put("/v1/clients/c/model", json={"model": "broken"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "model_invalid", response.text
    response = await format_server.http.put("/v1/clients/c/model", json={"model": "unsafe"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "model_invalid", response.text
    assert "holds Python code" in response.json()["error"]["message"]
    slots = (await format_server.http.get("/v1/slots")).json()["slots"]
    assert all(s["residue_bytes"] == 0 and s["state"] == "empty" for s in slots)  # failed loads leave nothing


async def test_the_native_api_loads_an_explicit_version(format_server: Server) -> None:
    headers = {"X-Client-Id": "v"}
    reply = await format_server.http.put("/v1/clients/v/model", json={"model": "signals", "version": 1})
    assert reply.status_code == 200, reply.text
    status = (await format_server.http.get("/v1/models/signals", headers=headers)).json()
    assert [s["version"] for s in status["model_version_status"]] == ["1"]
    await format_server.http.put("/v1/clients/v/model", json={"model": "signals"})
    status = (await format_server.http.get("/v1/models/signals", headers=headers)).json()
    assert [s["version"] for s in status["model_version_status"]] == ["2"]
    missing = await format_server.http.put("/v1/clients/v/model", json={"model": "signals", "version": 9})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"

"""Untrusted model files: graphs that touch files or run Python are refused before anything runs, constants count
against the slot, and configuration bombs are refused before they are read."""

import gc

import numpy as np
import pytest

from app.partitions import host_allocator_bytes
from app.settings import Settings
from tests.conftest import Server, open_server

pytestmark = pytest.mark.anyio

MIB = 1 << 20
ROW = {"instances": [[1.0, 2.0, 3.0, 4.0]]}


async def all_slots_empty(server: Server) -> bool:
    slots = (await server.http.get("/v1/slots")).json()["slots"]
    return all(s["state"] == "empty" and s["memory"]["in_use_bytes"] == 0 for s in slots)


@pytest.mark.parametrize("model,op", [("writes", "WriteFile"), ("writes_in_branch", "WriteFile"),
                                      ("reads", "ReadFile"), ("python_callback", "PyFunc"),
                                      ("dataset", "CacheDatasetV2"), ("vocab_reader", "GenerateVocabRemapping"),
                                      ("tf1_main_op", "TensorFlow 1")])
async def test_a_savedmodel_that_reaches_files_or_python_is_refused(hostile_server: Server, hostile_store, model: str,
                                                                    op: str) -> None:
    _, paths = hostile_store
    native = await hostile_server.http.put("/v1/clients/c/model", json={"model": model})
    assert native.status_code == 422, native.text
    error = native.json()["error"]
    assert error["code"] == "model_unsafe" and op in error["message"] and any(op in o for o in error["ops"])
    v2 = await hostile_server.http.post(f"/v2/repository/models/{model}/load", headers={"X-Client-Id": "c"})
    assert v2.status_code == 400 and op in v2.json()["error"]
    assert not paths["written"].exists()  # refused from the protobuf: nothing ran, not even the warm-up
    assert await all_slots_empty(hostile_server)


async def test_an_operator_may_trust_the_store(hostile_settings: Settings, hostile_store) -> None:
    _, paths = hostile_store
    async with open_server(hostile_settings.model_copy(update={"trust_savedmodel_ops": True})) as server:
        assert (await server.http.put("/v1/clients/c/model", json={"model": "reads"})).status_code == 200
        got = await server.http.post("/v1/clients/c/predict", json=ROW)
        expected = np.asarray(ROW["instances"]) + len(paths["secret"].read_bytes())
        np.testing.assert_allclose(got.json()["predictions"], expected)


@pytest.mark.parametrize("model", ["splat_constant", "host_constant"])
async def test_graph_constants_count_against_the_slot(hostile_server: Server, model: str) -> None:
    gc.collect()
    host_before = host_allocator_bytes()
    refused = await hostile_server.http.put("/v1/clients/c/model", json={"model": model})
    assert refused.status_code == 507 and refused.json()["error"]["code"] == "model_too_large"
    assert refused.json()["error"]["needed_bytes"] >= 32 * MIB  # a tiny file, 32 MiB once materialised
    gc.collect()
    assert host_allocator_bytes() == host_before and await all_slots_empty(hostile_server)  # refused unloaded
    loaded = await hostile_server.http.put("/v1/clients/c/model", json={"model": "dense_constant"})
    assert loaded.status_code == 200 and loaded.json()["memory"]["in_use_bytes"] == 2 * MIB  # no variables
    assert (await hostile_server.http.post("/v1/clients/c/predict", json=ROW)).status_code == 200
    unloaded = (await hostile_server.http.delete("/v1/clients/c/model")).json()
    assert unloaded["freed_bytes"] == 2 * MIB and unloaded["residue_bytes"] == 0
    assert unloaded["memory"]["in_use_bytes"] == 0


@pytest.mark.parametrize("model", ["units_bomb", "units_bomb_h5"])
async def test_a_configuration_that_builds_too_much_is_refused_before_it_allocates(hostile_server: Server,
                                                                                  model: str) -> None:
    gc.collect()
    host_before = host_allocator_bytes()
    refused = await hostile_server.http.put("/v1/clients/c/model", json={"model": model})
    assert refused.status_code == 507 and refused.json()["error"]["code"] == "model_too_large", refused.text
    assert refused.json()["error"]["needed_bytes"] >= 4 * 25_000_000 * 4  # its config, not its tiny weights
    gc.collect()
    assert host_allocator_bytes() == host_before and await all_slots_empty(hostile_server)  # nothing allocated


@pytest.mark.parametrize("model", ["config_bomb", "config_bomb_h5"])
async def test_a_configuration_bomb_is_refused_unread(hostile_server: Server, hostile_store, model: str) -> None:
    directory, _ = hostile_store
    assert sum(p.stat().st_size for p in directory.glob(f"{model}.*")) < 25 * MIB
    response = await hostile_server.http.put("/v1/clients/c/model", json={"model": model})
    assert response.status_code == 422 and response.json()["error"]["code"] == "model_invalid", response.text
    assert "configuration" in response.json()["error"]["message"]
    plain = "plain" if model == "config_bomb" else "plain_h5"
    assert (await hostile_server.http.put("/v1/clients/c/model", json={"model": plain})).status_code == 200


async def test_odd_version_directories_and_many_assets(hostile_server: Server, hostile_store) -> None:
    directory, _ = hostile_store
    listed = {m["name"]: m for m in (await hostile_server.http.get("/v1/models")).json()["models"]}
    served = directory / "many_assets" / "1"
    graph_and_variables = [served / "saved_model.pb", *(served / "variables").iterdir()]
    assert listed["many_assets"]["size_bytes"] == sum(p.stat().st_size for p in graph_and_variables)
    index = await hostile_server.http.post("/v2/repository/index")
    assert index.status_code == 200
    assert [e["version"] for e in index.json() if e["name"] == "many_assets"] == ["1"]  # '²', '١', '007' are not
    not_loaded = await hostile_server.http.post("/v2/models/many_assets/infer", json={"inputs": []})
    assert not_loaded.status_code == 400
    for version in ("١", "²"):
        for response in (await hostile_server.http.get(f"/v1/models/many_assets/versions/{version}"),
                         await hostile_server.http.get(f"/v2/models/many_assets/versions/{version}")):
            assert response.status_code == 400 and isinstance(response.json()["error"], str), response.text
    assert (await hostile_server.http.put("/v1/clients/c/model", json={"model": "many_assets", "version": 1}
                                          )).status_code == 200


async def test_store_listing_follows_changes_and_never_runs_in_error_paths(hostile_server: Server,
                                                                          hostile_store, monkeypatch) -> None:
    directory, _ = hostile_store
    before = {m["name"] for m in (await hostile_server.http.get("/v1/models")).json()["models"]}
    (directory / "copy.keras").write_bytes((directory / "plain.keras").read_bytes())
    try:
        after = {m["name"] for m in (await hostile_server.http.get("/v1/models")).json()["models"]}
        assert after == before | {"copy"}  # the directory changed: no stale listing
    finally:
        (directory / "copy.keras").unlink()
    store = hostile_server.registry.store
    listings = []
    monkeypatch.setattr(store, "list", lambda: listings.append(1) or [])
    for response in (await hostile_server.http.post("/v2/models/plain/infer", json={"inputs": []}),
                     await hostile_server.http.get("/v2/models/nope/ready"),
                     await hostile_server.http.post("/v2/repository/models/plain/unload"),
                     await hostile_server.http.get("/v1/models/plain")):
        assert response.status_code in (400, 404)
    assert listings == []  # error paths look a name up; they never list the store

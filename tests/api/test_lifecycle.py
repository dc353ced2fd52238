"""Load, predict, swap and unload for several clients, through HTTP, against Keras's own outputs."""

import gc

import pytest

from app.partitions import host_allocator_bytes
from tests.conftest import SLOT_MB, Server
from tests.helpers import assert_bytes, assert_columns_match, assert_rows_match, columns_body, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio


async def load(server: Server, client: str, model: str) -> dict:
    response = await server.http.put(f"/v1/clients/{client}/model", json={"model": model})
    assert response.status_code == 200, response.text
    return response.json()


async def predict(server: Server, client: str, body: dict) -> dict:
    response = await server.http.post(f"/v1/clients/{client}/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def test_three_clients_load_predict_swap_unload(server: Server, refs: dict[str, Reference]) -> None:
    gc.collect()
    host_before = host_allocator_bytes()
    empty = {s["slot"]: s["memory"]["in_use_bytes"] for s in (await server.http.get("/v1/slots")).json()["slots"]}

    plan = {"alice": "tiny", "bob": "pair", "carol": "ints"}
    slots = {}
    for client, model in plan.items():
        body = await load(server, client, model)
        assert body["client"] == client and body["model"] == model and body["state"] == "ready"
        assert body["previous_model"] is None and body["freed_bytes"] == 0 and body["strategy"] == "load"
        assert body["memory"]["limit_bytes"] == SLOT_MB * 2**20
        assert_bytes(body["memory"]["in_use_bytes"], refs[model].weight_bytes)
        slots[client] = body["slot"]
    assert len(set(slots.values())) == 3

    for client, model in plan.items():
        assert_rows_match(await predict(server, client, rows_body(refs[model])), refs[model])
        assert_columns_match(await predict(server, client, columns_body(refs[model])), refs[model])

    # swap alice in place: same slot, only the new model's bytes remain, the old model's bytes come back
    swapped = await load(server, "alice", "wide")
    assert swapped["slot"] == slots["alice"] and swapped["previous_model"] == "tiny"
    assert_bytes(swapped["memory"]["in_use_bytes"], refs["wide"].weight_bytes)
    assert swapped["freed_bytes"] >= refs["tiny"].weight_bytes
    assert swapped["residue_bytes"] == 0
    assert_rows_match(await predict(server, "alice", rows_body(refs["wide"])), refs["wide"])

    record = (await server.http.get("/v1/clients/alice")).json()
    assert record == {"client": "alice", "model": "wide", "slot": slots["alice"], "device": swapped["device"],
                      "state": "ready", "memory": record["memory"],
                      "batching": {"max_batch_size": 64, "max_delay_us": 0}, "reason": None}
    assert_bytes(record["memory"]["in_use_bytes"], refs["wide"].weight_bytes)

    # the other clients never noticed
    assert_rows_match(await predict(server, "bob", rows_body(refs["pair"])), refs["pair"])

    expected_models = {"alice": "wide", "bob": "pair", "carol": "ints"}
    for client, model in expected_models.items():
        response = await server.http.delete(f"/v1/clients/{client}/model")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["client"] == client and body["model"] == model and body["slot"] == slots[client]
        assert_bytes(body["freed_bytes"], refs[model].weight_bytes)
        assert body["residue_bytes"] == 0
        assert body["memory"]["in_use_bytes"] == empty[slots[client]]

    listing = (await server.http.get("/v1/slots")).json()["slots"]
    assert len(listing) == 4
    for slot in listing:
        assert slot["state"] == "empty" and slot["client"] is None and slot["model"] is None
        assert slot["memory"]["in_use_bytes"] == empty[slot["slot"]]
        assert slot["residue_bytes"] == 0
    # the shared host allocator agrees: every byte the slots took came back
    gc.collect()
    assert host_allocator_bytes() == host_before


async def test_same_client_keeps_its_slot_and_unload_frees_it(server: Server, refs: dict[str, Reference]) -> None:
    first = await load(server, "dave", "tiny")
    second = await load(server, "dave", "tiny2")
    assert first["slot"] == second["slot"]
    await server.http.delete("/v1/clients/dave/model")
    assert (await server.http.get("/v1/clients/dave")).status_code == 404
    slot = (await server.http.get("/v1/slots")).json()["slots"][first["slot"]]
    assert slot["state"] == "empty" and slot["client"] is None


async def test_reload_of_the_same_model_reads_the_file_again(server: Server, refs: dict[str, Reference]) -> None:
    await load(server, "erin", "tiny")
    again = await load(server, "erin", "tiny")
    assert again["previous_model"] == "tiny"
    assert_bytes(again["memory"]["in_use_bytes"], refs["tiny"].weight_bytes)
    assert_rows_match(await predict(server, "erin", rows_body(refs["tiny"])), refs["tiny"])


async def test_model_listing(server: Server, refs: dict[str, Reference]) -> None:
    models = (await server.http.get("/v1/models")).json()["models"]
    by_name = {m["name"]: m for m in models}
    assert set(refs) <= set(by_name)
    assert "notes" not in by_name  # not a model file
    assert by_name["tiny"] == {"name": "tiny", "format": "keras", "size_bytes": refs["tiny"].path.stat().st_size}


async def test_health_and_docs(server: Server) -> None:
    assert (await server.http.get("/healthz")).json() == {"status": "ok"}
    assert (await server.http.get("/readyz")).json() == {"status": "ok"}
    assert (await server.http.get("/docs")).status_code == 200
    spec = (await server.http.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, method in [("/v1/models", "get"), ("/v1/clients/{client}/model", "put"),
                         ("/v1/clients/{client}/model", "delete"), ("/v1/clients/{client}/predict", "post"),
                         ("/v1/clients/{client}", "get"), ("/v1/slots", "get"), ("/healthz", "get"),
                         ("/readyz", "get")]:
        assert method in paths[path], (path, method)
    assert "requestBody" in paths["/v1/clients/{client}/model"]["put"]
    assert "requestBody" in paths["/v1/clients/{client}/predict"]["post"]
    put_errors = paths["/v1/clients/{client}/model"]["put"]["responses"]
    assert {"404", "422", "503", "507"} <= set(put_errors)
    assert "model_too_large" in put_errors["507"]["description"]

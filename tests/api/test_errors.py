"""Every documented error: its status, its code, and that nothing else is disturbed by it."""

import pytest

from app.settings import Settings
from tests.conftest import SLOTS, Server, open_server
from tests.helpers import assert_bytes, assert_rows_match, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"].endswith(".")
    return body["error"]


async def test_model_not_found(server: Server) -> None:
    error = assert_error(await server.http.put("/v1/clients/a/model", json={"model": "nope"}), 404, "model_not_found")
    assert "nope" in error["message"]
    assert (await server.http.get("/v1/clients/a")).status_code == 404  # the failed load created no client


@pytest.mark.parametrize("method,path", [
    ("POST", "/v1/clients/ghost/predict"), ("GET", "/v1/clients/ghost"), ("DELETE", "/v1/clients/ghost/model"),
])
async def test_client_not_found(server: Server, method: str, path: str) -> None:
    body = {"instances": [[1.0]]} if method == "POST" else None
    assert_error(await server.http.request(method, path, json=body), 404, "client_not_found")


@pytest.mark.parametrize("path,content", [
    ("/v1/clients/a/model", b"{not json"),
    ("/v1/clients/a/model", b'{"modell": "tiny"}'),
    ("/v1/clients/a/model", b'{"model": "tiny", "extra": 1}'),
    ("/v1/clients/a/model", b'{"model": 5}'),
    ("/v1/clients/a/model", b'{"model": "../tiny"}'),
    ("/v1/clients/a/model", b'{"model": "/etc/passwd"}'),
    ("/v1/clients/a/model", b'{"model": ".hidden"}'),
    ("/v1/clients/a/model", b'["tiny"]'),
    ("/v1/clients/-bad/model", b'{"model": "tiny"}'),
    ("/v1/clients/" + "x" * 65 + "/model", b'{"model": "tiny"}'),
])
async def test_invalid_load_request(server: Server, path: str, content: bytes) -> None:
    assert_error(await server.http.put(path, content=content), 422, "invalid_request")


@pytest.mark.parametrize("content", [
    b"not json", b"[]", b'"text"', b"{}", b'{"instances": [[1]], "inputs": [[1]]}', b'{"rows": [[1]]}',
])
async def test_invalid_predict_request(server: Server, content: bytes) -> None:
    await server.http.put("/v1/clients/a/model", json={"model": "tiny"})
    assert_error(await server.http.post("/v1/clients/a/predict", content=content), 422, "invalid_request")


@pytest.mark.parametrize("model,body,expect", [
    ("tiny", {"instances": [[1.0] * 31]}, "float32[None, 32]"),
    ("tiny", {"instances": [[1.0] * 32, [1.0] * 31]}, "float32[None, 32]"),
    ("tiny", {"instances": [["a"] * 32]}, "float32[None, 32]"),
    ("tiny", {"instances": [[None] * 32]}, "float32[None, 32]"),
    ("tiny", {"instances": []}, "float32[None, 32]"),
    ("tiny", {"instances": None}, "float32[None, 32]"),
    ("tiny", {"inputs": 3.0}, "float32[None, 32]"),
    ("tiny", {"inputs": [[[1.0] * 32]]}, "float32[None, 32]"),
    ("ints", {"instances": [[1.5, 2, 3, 4, 5]]}, "int32[None, 5]"),
    ("ints", {"instances": [[1, 2, 3, 4, 10**12]]}, "int32[None, 5]"),
    ("pair", {"instances": [[1.0] * 8]}, "'a' float32[None, 8]"),
    ("pair", {"inputs": {"a": [[1.0] * 8]}}, "'b' float32[None, 4]"),
    ("pair", {"inputs": {"a": [[1.0] * 8], "b": [[1.0] * 4, [2.0] * 4]}}, "same number of rows"),
])
async def test_invalid_input_names_what_was_expected(server: Server, model: str, body: dict, expect: str) -> None:
    await server.http.put("/v1/clients/a/model", json={"model": model})
    error = assert_error(await server.http.post("/v1/clients/a/predict", json=body), 422, "invalid_input")
    assert expect in error["message"]


async def test_integer_valued_floats_are_accepted_for_int_inputs(server: Server, refs: dict[str, Reference]) -> None:
    await server.http.put("/v1/clients/a/model", json={"model": "ints"})
    rows = refs["ints"].inputs["tokens"].astype(float).tolist()
    response = await server.http.post("/v1/clients/a/predict", json={"instances": rows})
    assert response.status_code == 200
    assert_rows_match(response.json(), refs["ints"])


@pytest.mark.parametrize("model", ["corrupt", "unsafe"])
async def test_model_invalid_leaves_nothing_behind(server: Server, model: str, refs: dict[str, Reference]) -> None:
    error = assert_error(await server.http.put("/v1/clients/a/model", json={"model": model}), 422, "model_invalid")
    assert model in error["message"]
    assert (await server.http.get("/v1/clients/a")).status_code == 404
    slots = (await server.http.get("/v1/slots")).json()["slots"]
    assert all(s["state"] == "empty" and s["memory"]["in_use_bytes"] == 0 for s in slots)
    # a client that had a model keeps it
    await server.http.put("/v1/clients/b/model", json={"model": "tiny"})
    error = assert_error(await server.http.put("/v1/clients/b/model", json={"model": model}), 422, "model_invalid")
    assert error["serving"] == "tiny"
    assert_rows_match((await server.http.post("/v1/clients/b/predict", json=rows_body(refs["tiny"]))).json(),
                      refs["tiny"])


async def test_no_free_slot(server: Server, refs: dict[str, Reference]) -> None:
    for i in range(SLOTS):
        assert (await server.http.put(f"/v1/clients/c{i}/model", json={"model": "tiny"})).status_code == 200
    assert_error(await server.http.put("/v1/clients/late/model", json={"model": "tiny"}), 503, "no_free_slot")
    # a freed slot is claimable again
    await server.http.delete("/v1/clients/c0/model")
    assert (await server.http.put("/v1/clients/late/model", json={"model": "tiny"})).status_code == 200


async def test_model_too_large(server: Server, refs: dict[str, Reference]) -> None:
    error = assert_error(await server.http.put("/v1/clients/a/model", json={"model": "big"}), 507, "model_too_large")
    assert error["needed_bytes"] > error["limit_bytes"]
    assert (await server.http.get("/v1/clients/a")).status_code == 404
    await server.http.put("/v1/clients/b/model", json={"model": "tiny"})
    error = assert_error(await server.http.put("/v1/clients/b/model", json={"model": "big"}), 507, "model_too_large")
    assert error["serving"] == "tiny"
    record = (await server.http.get("/v1/clients/b")).json()
    assert record["model"] == "tiny"
    assert_bytes(record["memory"]["in_use_bytes"], refs["tiny"].weight_bytes)


async def test_payload_too_large(settings: Settings, refs: dict[str, Reference]) -> None:
    async with open_server(settings.model_copy(update={"max_rows": 3})) as server:
        await server.http.put("/v1/clients/a/model", json={"model": "tiny"})
        error = assert_error(await server.http.post("/v1/clients/a/predict", json=rows_body(refs["tiny"])),
                             413, "payload_too_large")
        assert error["max_rows"] == 3
        ok = await server.http.post("/v1/clients/a/predict", json=rows_body(refs["tiny"], slice(0, 3)))
        assert_rows_match(ok.json(), refs["tiny"], slice(0, 3))


async def test_unknown_route_and_method(server: Server) -> None:
    assert_error(await server.http.get("/v1/nothing"), 404, "not_found")
    refused = await server.http.post("/v1/slots")
    assert_error(refused, 405, "method_not_allowed")
    assert refused.headers["allow"] == "GET, HEAD"
    # several routes share a path: Allow names all their methods
    both = await server.http.post("/v1/clients/a/model")
    assert both.status_code == 405 and both.headers["allow"] == "DELETE, PUT"
    # under the protocols' prefixes the answer has their flat shape
    for response, status in ((await server.http.get("/v2/nothing"), 404), (await server.http.delete("/v2"), 405),
                             (await server.http.get("/v1/models/tiny/nothing"), 404)):
        assert response.status_code == status and isinstance(response.json()["error"], str), response.text
    assert (await server.http.delete("/v2")).headers["allow"] == "GET, HEAD"


async def test_head_answers_as_get_without_a_body(server: Server) -> None:
    for path in ("/healthz", "/v1/models", "/v1/slots", "/v2", "/openapi.json"):
        got, head = await server.http.get(path), await server.http.head(path)
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["content-length"] == got.headers["content-length"]
        assert head.headers["content-type"] == got.headers["content-type"]

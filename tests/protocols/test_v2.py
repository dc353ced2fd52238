"""The Open Inference Protocol (V2) REST facade through real HTTP (ASGI), against Keras's own outputs."""

import json
from typing import Any

import httpx
import numpy as np
import pytest

from app.api import create_app
from app.settings import Settings
from tests.conftest import BASE_URL, SLOTS, Server, open_server
from tests.helpers import TOLERANCE
from tests.models import Reference

pytestmark = pytest.mark.anyio

def v2_error(response: httpx.Response, status: int) -> str:
    """Assert the V2 error shape ``{"error": "<message>"}`` and ``status``; return the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"].endswith("."), body
    return body["error"]


def headers(client: str) -> dict[str, str]:
    return {"X-Client-Id": client}


async def load(server: Server, client: str, model: str) -> None:
    response = await server.http.post(f"/v2/repository/models/{model}/load", headers=headers(client))
    assert response.status_code == 200 and response.json() == {"name": model, "load": True}, response.text


def tensors(ref: Reference, nested: bool = True) -> list[dict[str, Any]]:
    """V2 JSON input tensors for the reference inputs (nested or flat ``data``)."""
    return [{"name": n, "shape": list(v.shape), "datatype": v.dtype.name.upper().replace("FLOAT", "FP"),
             "data": v.tolist() if nested else v.reshape(-1).tolist()} for n, v in ref.inputs.items()]


async def infer(server: Server, client: str, model: str, body: dict[str, Any], status: int = 200) -> httpx.Response:
    response = await server.http.post(f"/v2/models/{model}/infer", json=body, headers=headers(client))
    assert response.status_code == status, response.text
    return response


def assert_output(tensor: dict[str, Any], ref: Reference, name: str) -> None:
    expected = ref.outputs[name]
    assert tensor["name"] == name and tensor["datatype"] == "FP32" and tensor["shape"] == list(expected.shape)
    np.testing.assert_allclose(np.asarray(tensor["data"]).reshape(expected.shape), expected, atol=TOLERANCE, rtol=0)


async def post_binary(server: Server, model: str, request: dict[str, Any], *chunks: bytes) -> httpx.Response:
    """Infer for client "a" with a body of the binary tensor data extension built by hand: JSON header, raw tensors."""
    header = json.dumps(request).encode()
    return await server.http.post(f"/v2/models/{model}/infer", content=header + b"".join(chunks), headers={
        "Inference-Header-Content-Length": str(len(header)), **headers("a")})


def split_binary(response: httpx.Response) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and each binary output as an array, parsed by hand from the raw response."""
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["inference-header-content-length"])
    header, offset, arrays = json.loads(response.content[:length]), length, {}
    for tensor in header["outputs"]:
        size = tensor.get("parameters", {}).get("binary_data_size")
        if size is not None:
            assert "data" not in tensor and tensor["datatype"] == "FP32"
            raw = response.content[offset:offset + size]
            arrays[tensor["name"]], offset = np.frombuffer(raw, "<f4").reshape(tensor["shape"]), offset + size
    assert offset == len(response.content)
    return header, arrays

def x_tensor(**fields: Any) -> dict[str, Any]:
    """A request for the "tiny" model whose one input has ``fields`` changed (``None``: left out)."""
    tensor = {"name": "x", "shape": [1, 32], "datatype": "FP32", "data": [0.5] * 32} | fields
    return {"inputs": [{k: v for k, v in tensor.items() if v is not None}]}


async def test_health_and_server_metadata(settings: Settings) -> None:
    app = create_app(settings)  # its lifespan has not run: no registry yet
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as http:
        assert (await http.get("/v2/health/live")).json() == {"live": True}
        assert "starting" in v2_error(await http.get("/v2/health/ready"), 503)
        assert "starting" in v2_error(await http.get("/v2"), 503)  # who may ask is not known yet either
    async with open_server(settings) as server:
        ready = await server.http.get("/v2/health/ready")
        assert ready.status_code == 200 and ready.json() == {"ready": True}
        assert (await server.http.get("/v2")).json() == {"name": "slotserve", "version": "0.1.0",
                                                         "extensions": ["binary_tensor_data", "model_repository"]}


async def test_model_metadata(server: Server) -> None:
    for client, model in (("a", "tiny"), ("b", "pair"), ("c", "ints"), ("d", "sequence")):
        await load(server, client, model)
    tiny = await server.http.get("/v2/models/tiny", headers=headers("a"))
    assert tiny.status_code == 200
    assert tiny.json() == {"name": "tiny", "versions": ["1"], "platform": "tensorflow_keras",
                           "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 32]}],
                           "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 10]}]}
    assert (await server.http.get("/v2/models/tiny/versions/1", headers=headers("a"))).json() == tiny.json()
    pair = (await server.http.get("/v2/models/pair", headers=headers("b"))).json()
    assert pair["inputs"] == [{"name": "a", "datatype": "FP32", "shape": [-1, 8]},
                              {"name": "b", "datatype": "FP32", "shape": [-1, 4]}]
    assert {t["name"]: (t["datatype"], t["shape"]) for t in pair["outputs"]} == {"probs": ("FP32", [-1, 3]),
                                                                                 "score": ("FP32", [-1, 1])}
    for client, model, expected in (("c", "ints", {"name": "tokens", "datatype": "INT32", "shape": [-1, 5]}),
                                    ("d", "sequence", {"name": "x", "datatype": "FP32", "shape": [-1, -1, 4]})):
        assert (await server.http.get(f"/v2/models/{model}", headers=headers(client))).json()["inputs"] == [expected]


async def test_ready_before_and_after_load_and_unload(server: Server) -> None:
    assert "no model loaded" in v2_error(await server.http.get("/v2/models/tiny/ready"), 400)
    await load(server, "default", "tiny")  # no X-Client-Id header: the "default" client
    for path in ("/v2/models/tiny/ready", "/v2/models/tiny/versions/1/ready"):
        ready = await server.http.get(path)
        assert ready.status_code == 200 and ready.json() == {"name": "tiny", "ready": True}
    assert "it has 'tiny' loaded" in v2_error(await server.http.get("/v2/models/pair/ready"), 400)
    v2_error(await server.http.get("/v2/models/tiny/ready", headers=headers("other")), 400)
    assert (await server.http.post("/v2/repository/models/tiny/unload")).json() == {"name": "tiny", "unload": True}
    v2_error(await server.http.get("/v2/models/tiny/ready"), 400)


async def test_repository_index_load_unload(server: Server) -> None:
    store = [m["name"] for m in (await server.http.get("/v1/models")).json()["models"]]
    index = await server.http.post("/v2/repository/index", headers=headers("a"))
    assert index.status_code == 200
    assert index.json() == [{"name": n, "version": "1", "state": "UNAVAILABLE", "reason": "not loaded by this client"}
                            for n in store]
    await load(server, "a", "tiny")
    index = (await server.http.post("/v2/repository/index", json={}, headers=headers("a"))).json()
    assert [e["name"] for e in index if e["state"] == "READY"] == ["tiny"] and len(index) == len(store)
    ready_only = await server.http.post("/v2/repository/index", json={"ready": True}, headers=headers("a"))
    assert ready_only.json() == [{"name": "tiny", "version": "1", "state": "READY", "reason": ""}]
    assert (await server.http.post("/v2/repository/index", json={"ready": True}, headers=headers("b"))).json() == []
    # a load with parameters swaps the caller's model in place
    assert (await server.http.post("/v2/repository/models/pair/load", json={"parameters": {}},
                                   headers=headers("a"))).json() == {"name": "pair", "load": True}
    assert (await server.http.get("/v1/clients/a")).json()["model"] == "pair"
    assert "it has 'pair' loaded" in v2_error(
        await server.http.post("/v2/repository/models/tiny/unload", headers=headers("a")), 400)
    unload = await server.http.post("/v2/repository/models/pair/unload", headers=headers("a"),
                                    json={"parameters": {"unload_dependents": False}})
    assert unload.json() == {"name": "pair", "unload": True}
    assert (await server.http.get("/v1/clients/a")).status_code == 404


@pytest.mark.parametrize("nested", [True, False])
async def test_infer_json(server: Server, refs: dict[str, Reference], nested: bool) -> None:
    await load(server, "a", "tiny")
    body = (await infer(server, "a", "tiny", {"inputs": tensors(refs["tiny"], nested)})).json()
    assert set(body) == {"model_name", "model_version", "outputs"} and len(body["outputs"]) == 1
    assert body["model_name"] == "tiny" and body["model_version"] == "1"
    assert_output(body["outputs"][0], refs["tiny"], "y")


async def test_infer_multi_input_outputs_selection_and_id(server: Server, refs: dict[str, Reference]) -> None:
    await load(server, "a", "pair")
    ref = refs["pair"]
    for wanted in (None, ["probs"], ["score"], ["probs", "score"], ["score", "probs"]):
        request = {"id": f"req-{wanted}", "parameters": {"priority": 1}, "inputs": tensors(ref),
                   "outputs": [{"name": n} for n in wanted] if wanted else None}  # null: every output
        body = (await infer(server, "a", "pair", request)).json()
        names = [t["name"] for t in body["outputs"]]
        assert body["id"] == f"req-{wanted}" and (names == wanted if wanted else sorted(names) == ["probs", "score"])
        for tensor in body["outputs"]:
            assert_output(tensor, ref, tensor["name"])
    unknown = await infer(server, "a", "pair", {"inputs": tensors(ref), "outputs": [{"name": "nope"}]}, 400)
    assert "no output ['nope']" in v2_error(unknown, 400)


async def test_infer_converts_datatypes_losslessly(server: Server, refs: dict[str, Reference]) -> None:
    await load(server, "a", "tiny")
    await load(server, "b", "ints")
    as_int, as_float = x_tensor(datatype="INT64", data=list(range(-8, 24))), x_tensor(data=list(range(-8, 24)))
    assert (await infer(server, "a", "tiny", as_int)).json() == (await infer(server, "a", "tiny", as_float)).json()
    tokens = refs["ints"].inputs["tokens"]
    body = (await infer(server, "b", "ints", {"inputs": [
        {"name": "tokens", "shape": list(tokens.shape), "datatype": "INT64", "data": tokens.tolist()}]})).json()
    assert_output(body["outputs"][0], refs["ints"], "y")
    lossy = {"inputs": [{"name": "tokens", "shape": [1, 5], "datatype": "FP64", "data": [1.5, 2, 3, 4, 5]}]}
    assert "cannot hold exactly" in v2_error(await infer(server, "b", "ints", lossy, 400), 400)


async def test_binary_request_and_response(server: Server, refs: dict[str, Reference]) -> None:
    await load(server, "a", "pair")
    ref = refs["pair"]
    a, b = ref.inputs["a"].astype("<f4"), ref.inputs["b"].astype("<f4")
    response = await post_binary(server, "pair", {"inputs": [
        {"name": "a", "shape": list(a.shape), "datatype": "FP32", "parameters": {"binary_data_size": a.nbytes}},
        {"name": "b", "shape": list(b.shape), "datatype": "FP32", "parameters": {"binary_data_size": b.nbytes}},
    ], "parameters": {"binary_data_output": True}}, a.tobytes(), b.tobytes())
    assert response.status_code == 200, response.text
    header, arrays = split_binary(response)
    assert sorted(arrays) == ["probs", "score"]
    for name, array in arrays.items():
        np.testing.assert_allclose(array, ref.outputs[name], atol=TOLERANCE, rtol=0)
    # per-output binary_data: one output as bytes, the other as JSON, in the order asked
    mixed = {"inputs": tensors(ref), "outputs": [{"name": "score", "parameters": {"binary_data": True}},
                                                  {"name": "probs"}]}
    header, arrays = split_binary(await infer(server, "a", "pair", mixed))
    assert [t["name"] for t in header["outputs"]] == ["score", "probs"] and list(arrays) == ["score"]
    np.testing.assert_allclose(arrays["score"], ref.outputs["score"], atol=TOLERANCE, rtol=0)
    assert_output(header["outputs"][1], ref, "probs")


async def test_binary_request_errors(server: Server, refs: dict[str, Reference]) -> None:
    await load(server, "a", "tiny")
    x = refs["tiny"].inputs["x"].astype("<f4")
    tensor = {"name": "x", "shape": list(x.shape), "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
    assert "only" in v2_error(await post_binary(server, "tiny", {"inputs": [tensor]}, x.tobytes()[:-4]), 400)
    extra = await post_binary(server, "tiny", {"inputs": [tensor]}, x.tobytes(), b"\0\0\0\0")
    assert "accounts for" in v2_error(extra, 400)
    short = {**tensor, "shape": [4, 32]}  # the bytes hold 5 rows; the shape says 4
    assert "needs" in v2_error(await post_binary(server, "tiny", {"inputs": [short]}, x.tobytes()), 400)
    lying = {"Inference-Header-Content-Length": "99", **headers("a")}  # longer than the body
    response = await server.http.post("/v2/models/tiny/infer", content=b"{}", headers=lying)
    assert "Inference-Header-Content-Length" in v2_error(response, 400)


async def test_unknown_model_version_or_not_loaded_by_caller(server: Server, refs: dict[str, Reference]) -> None:
    await load(server, "owner", "tiny")
    body = {"inputs": tensors(refs["tiny"])}
    for response in (await infer(server, "owner", "nope", body, 400), await server.http.get("/v2/models/nope"),
                     await server.http.get("/v2/models/nope/ready"),
                     await server.http.post("/v2/repository/models/nope/unload")):
        assert v2_error(response, 400) == "Request for unknown model: 'nope' is not in the model store."
    assert "nope" in v2_error(await server.http.post("/v2/repository/models/nope/load"), 400)
    owner = headers("owner")
    assert (await server.http.post("/v2/models/tiny/versions/1/infer", json=body, headers=owner)).status_code == 200
    for response in (await server.http.post("/v2/models/tiny/versions/2/infer", json=body, headers=owner),
                     await server.http.get("/v2/models/tiny/versions/2", headers=owner)):
        assert "is not loaded; the caller has version 1" in v2_error(response, 400)
    for version in ("latest", "١", "1" * 19):  # versions are 1-18 ASCII digits, as the OpenAPI says
        response = await server.http.get(f"/v2/models/tiny/versions/{version}/ready", headers=owner)
        assert "path.version" in v2_error(response, 400)
    for client in ("stranger", "default"):  # another client loaded it; these have nothing loaded
        message = v2_error(await infer(server, client, "tiny", body, 400), 400)
        assert message == (f"Model 'tiny' is not loaded for client '{client}' (it has no model loaded); "
                           "load it with POST /v2/repository/models/tiny/load.")
        v2_error(await server.http.get("/v2/models/tiny", headers=headers(client)), 400)
    await load(server, "stranger", "pair")
    assert "it has 'pair' loaded" in v2_error(await infer(server, "stranger", "tiny", body, 400), 400)
    v2_error(await server.http.post("/v2/repository/models/tiny/unload", headers=headers("stranger")), 400)
    assert (await infer(server, "owner", "tiny", body)).status_code == 200  # the owner is undisturbed


@pytest.mark.parametrize("body,expected", [
    (x_tensor(shape=[1, 31], data=[0.5] * 31), "has shape [1, 31]"),
    (x_tensor(shape=[2, 32]), "has 32 values"),
    (x_tensor(datatype="STRING"), "datatype 'STRING'"),
    (x_tensor(datatype="BYTES", data=["a"] * 32), "BYTES"),
    (x_tensor(data=["a"] * 32), "must be numbers"),
    (x_tensor(data=[[1], [1, 2]]), "must be numbers"),
    (x_tensor(datatype="FP16", data=[1e9] * 32), "FP16 cannot hold"),
    (x_tensor(datatype="INT32", data=[1.5] * 32), "INT32 cannot hold"),
    (x_tensor(data=None), "neither 'data'"),
    (x_tensor(shape=None), "'shape'"),
    (x_tensor(name="wrong"), "takes inputs ['x']"),
    (x_tensor() | {"outputs": {}}, "'outputs' must be a list"),
    (b"not json", "not valid JSON"), (b"[]", "'inputs' list"), (b"{}", "'inputs' list"),
    (b'{"inputs": [1]}', "string 'name'"), (b'{"inputs": [{"name": 1}]}', "string 'name'"),
])
async def test_bad_tensor_or_request(server: Server, body: dict[str, Any] | bytes, expected: str) -> None:
    await load(server, "a", "tiny")
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await server.http.post("/v2/models/tiny/infer", content=content, headers=headers("a"))
    assert expected in v2_error(response, 400)


async def test_capacity_and_size_errors_keep_their_status(settings: Settings) -> None:
    async with open_server(settings.model_copy(update={"max_body_mb": 1})) as server:
        assert "needs about" in v2_error(await server.http.post("/v2/repository/models/big/load"), 507)
        for i in range(SLOTS):
            await load(server, f"c{i}", "tiny")
        full = await server.http.post("/v2/repository/models/tiny/load", headers=headers("late"))
        assert "slots are held" in v2_error(full, 503)
        refused = await server.http.post("/v2/repository/models/unsafe/load", headers=headers("c0"))
        assert "Python code" in v2_error(refused, 400)
        assert (await server.http.get("/v2/models/tiny/ready", headers=headers("c0"))).status_code == 200
        big = await server.http.post("/v2/models/tiny/infer", content=b" " * (2 << 20), headers=headers("c0"))
        assert "limit of 1 MiB" in v2_error(big, 413)


async def test_request_validation_and_routing_errors(server: Server) -> None:
    v2_error(await server.http.get("/v2/models/-bad"), 400)
    assert "X-Client-Id" in v2_error(await server.http.get("/v2/models/tiny/ready", headers=headers("../x")), 400)
    assert "not valid JSON" in v2_error(await server.http.post("/v2/repository/models/tiny/load", content=b"{"), 400)
    v2_error(await server.http.post("/v2/repository/index", json={"ready": "yes"}), 400)
    v2_error(await server.http.post("/v2/repository/models/tiny/load", json={"parameters": {"config": "{}"}}), 400)
    native = await server.http.get("/v1/clients/ghost")  # the native API keeps its own error shape
    assert native.status_code == 404 and native.json()["error"]["code"] == "client_not_found"


async def test_openapi_documents_every_v2_route(server: Server) -> None:
    routes = {p: ops for p, ops in (await server.http.get("/openapi.json")).json()["paths"].items() if p[:3] == "/v2"}
    assert len(routes) == 12
    for path, ops in routes.items():
        for method, op in ops.items():
            assert op["summary"] and "200" in op["responses"] and "422" not in op["responses"], (method, path)
            assert all("error" in r["content"]["application/json"]["schema"]["properties"]
                       for status, r in op["responses"].items() if status != "200"), (method, path)

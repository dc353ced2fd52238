"""TF Serving's REST API through real HTTP (ASGI): its documentation's examples against SavedModels exported from
Keras in the test, model status and metadata, versions, and its error shape for every failure."""

from typing import Any

import httpx
import numpy as np
import pytest

from app.settings import Settings
from tests.conftest import Server, open_server
from tests.helpers import TOLERANCE
from tests.models import Reference
from tests.protocols.format_store import DOC_INPUTS

pytestmark = pytest.mark.anyio


def tf_error(response: httpx.Response, status: int) -> str:
    """Assert TF Serving's error shape ``{"error": "<message>"}`` and ``status``; return the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"].endswith("."), body
    return body["error"]


async def load(server: Server, client: str, model: str) -> None:
    response = await server.http.put(f"/v1/clients/{client}/model", json={"model": model})
    assert response.status_code == 200, response.text


async def predict(server: Server, path: str, body: dict[str, Any], client: str = "default") -> httpx.Response:
    return await server.http.post(f"/v1/models/{path}:predict", json=body, headers={"X-Client-Id": client})


def close(got: Any, expected: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(got), expected, atol=TOLERANCE, rtol=0)


async def test_the_documentation_example(format_server: Server, format_refs: dict[str, Reference]) -> None:
    await load(format_server, "default", "half_plus_three")  # no X-Client-Id: the client is "default"
    status = await format_server.http.get("/v1/models/half_plus_three")
    assert status.status_code == 200 and status.json() == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    response = await format_server.http.post("/v1/models/half_plus_three:predict", content=b'{"instances": [1.0,2.0,5.0]}')
    assert response.status_code == 200 and response.json() == {"predictions": [3.5, 4.0, 5.5]}
    close(response.json()["predictions"], format_refs["half_plus_three"].outputs["output_0"])
    # "An incorrect request URL or body returns an HTTP error status"
    missing = await format_server.http.post("/v1/models/half:predict", content=b'{"instances": [1.0,5.0]}')
    assert "no model called 'half'" in tf_error(missing, 404)


async def test_rows_with_named_inputs_and_columns(format_server: Server, format_refs: dict[str, Reference]) -> None:
    await load(format_server, "a", "signals")
    ref = format_refs["signals_v2"]  # the highest version is served
    rows = {"instances": [{"signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
                          {"signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]}]}
    response = await predict(format_server, "signals", rows, "a")
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]  # a list of objects: the model has two named outputs
    assert len(predictions) == 2 and all(set(p) == {"probs", "score"} for p in predictions)
    for name in ("probs", "score"):
        close([p[name] for p in predictions], ref.outputs[name])
    columns = {"inputs": {name: value.tolist() for name, value in DOC_INPUTS.items()}}
    response = await predict(format_server, "signals/versions/2", columns, "a")
    outputs = response.json()["outputs"]  # an object by output name
    assert set(outputs) == {"probs", "score"}
    for name in ("probs", "score"):
        close(outputs[name], ref.outputs[name])


async def test_signature_name(format_server: Server, format_refs: dict[str, Reference]) -> None:
    await load(format_server, "a", "signals")
    embed = format_refs["signals_v2_embed"].outputs["hidden"]
    rows = {"signature_name": "embed", "instances": [{n: v[i].tolist() for n, v in DOC_INPUTS.items()} for i in (0, 1)]}
    response = await predict(format_server, "signals", rows, "a")
    assert response.status_code == 200, response.text
    close(response.json()["predictions"], embed)  # one output: the name is omitted
    columns = {"signature_name": "embed", "inputs": {n: v.tolist() for n, v in DOC_INPUTS.items()}}
    close((await predict(format_server, "signals", columns, "a")).json()["outputs"], embed)
    default = {"signature_name": "serving_default", "inputs": columns["inputs"]}
    close((await predict(format_server, "signals", default, "a")).json()["outputs"]["score"],
          format_refs["signals_v2"].outputs["score"])
    unknown = await predict(format_server, "signals", {"signature_name": "nope", "inputs": columns["inputs"]}, "a")
    assert "no signature 'nope'; its signatures are ['embed', 'serving_default']" in tf_error(unknown, 400)
    assert "must be a string" in tf_error(await predict(format_server, "signals", {**columns, "signature_name": 3}, "a"), 400)


async def test_one_input_rows_plain_layout_and_h5(format_server: Server, format_refs: dict[str, Reference]) -> None:
    await load(format_server, "b", "flat12")  # a plain SavedModel directory: flat12/saved_model.pb
    ref = format_refs["flat12"]
    response = await predict(format_server, "flat12", {"instances": [[[1, 2]], [[3, 4]]]}, "b")  # two [1, 2] tensors
    close(response.json()["predictions"], ref.outputs["output_0"])
    response = await predict(format_server, "flat12/versions/1", {"inputs": {"x": [[[1, 2]], [[3, 4]]]}}, "b")
    close(response.json()["outputs"], ref.outputs["output_0"])
    await load(format_server, "b", "pair_h5")
    ref = format_refs["pair_h5"]
    rows = {"instances": [{n: v[i].tolist() for n, v in ref.inputs.items()} for i in range(4)]}
    predictions = (await predict(format_server, "pair_h5", rows, "b")).json()["predictions"]
    for name in ("low", "high"):
        close([p[name] for p in predictions], ref.outputs[name])


def dims(*sizes: int) -> dict[str, Any]:
    return {"dim": [{"size": str(s), "name": ""} for s in sizes], "unknown_rank": False}


def tensor(name: str, *sizes: int) -> dict[str, Any]:
    return {"dtype": "DT_FLOAT", "tensor_shape": dims(*sizes), "name": name}


async def test_metadata(format_server: Server) -> None:
    await load(format_server, "a", "signals")
    inputs = {"sensor": tensor("sensor", -1, 2, 2), "signal": tensor("signal", -1, 5)}
    expected = {"model_spec": {"name": "signals", "signature_name": "", "version": "2"}, "metadata": {"signature_def": {
        "signature_def": {
            "serving_default": {"inputs": inputs, "outputs": {"probs": tensor("probs", -1, 3),
                                                             "score": tensor("score", -1, 1)},
                                "method_name": "tensorflow/serving/predict"},
            "embed": {"inputs": inputs, "outputs": {"hidden": tensor("hidden", -1, 6)},
                      "method_name": "tensorflow/serving/predict"}}}}}
    for path in ("/v1/models/signals/metadata", "/v1/models/signals/versions/2/metadata"):
        response = await format_server.http.get(path, headers={"X-Client-Id": "a"})
        assert response.status_code == 200 and response.json() == expected, response.text
    await load(format_server, "a", "legacy")  # a Keras model: one signature, from the loaded model, version "1"
    body = (await format_server.http.get("/v1/models/legacy/versions/1/metadata", headers={"X-Client-Id": "a"})).json()
    assert body["model_spec"]["version"] == "1"
    assert body["metadata"]["signature_def"]["signature_def"] == {"serving_default": {
        "inputs": {"x": tensor("x", -1, 6)}, "outputs": {"y": tensor("y", -1, 2)},
        "method_name": "tensorflow/serving/predict"}}


async def test_unknown_model_not_loaded_and_versions(format_server: Server) -> None:
    await load(format_server, "a", "signals")
    for response in (await predict(format_server, "nope", {"instances": [1.0]}, "a"),
                     await format_server.http.get("/v1/models/nope"),
                     await format_server.http.get("/v1/models/nope/metadata")):
        assert "no model called 'nope'" in tf_error(response, 404)
    # in the store, but this caller has loaded something else, or nothing at all
    for client, has in (("a", "it has 'signals'"), ("nobody", "has no model loaded")):
        for response in (await predict(format_server, "legacy", {"instances": [[0.0] * 6]}, client),
                         await format_server.http.get("/v1/models/legacy", headers={"X-Client-Id": client}),
                         await format_server.http.get("/v1/models/legacy/metadata", headers={"X-Client-Id": client})):
            message = tf_error(response, 404)
            assert "not loaded model 'legacy'" in message or "has no model loaded" in message
            assert has in message and f"PUT /v1/clients/{client}/model" in message
    body = {"inputs": {n: v.tolist() for n, v in DOC_INPUTS.items()}}
    assert "version 1 of model 'signals' is not loaded" in tf_error(
        await predict(format_server, "signals/versions/1", body, "a"), 404).lower()  # on disk, not what "a" loaded
    assert "no version 9" in tf_error(await format_server.http.get("/v1/models/signals/versions/9"), 404)
    assert "version" in tf_error(await format_server.http.get("/v1/models/signals/versions/x1"), 400)


@pytest.mark.parametrize("body,expected", [
    ({"instances": [[1.0, 2.0]]}, "expected 'x' float32[None, 6]"),
    ({"inputs": [["a"] * 6]}, "expected numbers for 'x' float32[None, 6]"),
    ({"instances": [[1.0] * 6, [1.0] * 5]}, "ragged"),
    ({"instances": [[1.0] * 6], "inputs": [[1.0] * 6]}, "exactly one of 'instances'"),
    ({"rows": [[1.0] * 6]}, "exactly one of 'instances'"),
])
async def test_bad_tensor(format_server: Server, body: dict[str, Any], expected: str) -> None:
    await load(format_server, "a", "legacy")
    assert expected in tf_error(await predict(format_server, "legacy", body, "a"), 400)


async def test_request_and_routing_errors_keep_the_shape(format_server: Server) -> None:
    await load(format_server, "a", "legacy")
    not_json = await format_server.http.post("/v1/models/legacy:predict", content=b"{nope", headers={"X-Client-Id": "a"})
    assert "not valid JSON" in tf_error(not_json, 400)
    assert "name" in tf_error(await format_server.http.post("/v1/models/-bad:predict", json={"instances": [1]}), 400)
    assert "X-Client-Id" in tf_error(await predict(format_server, "legacy", {"instances": [1]}, "bad client"), 400)
    for path in ("/v1/models/legacy:classify", "/v1/models/legacy/versions/1:regress"):
        assert "':predict' only" in tf_error(await format_server.http.post(path, json={}), 404)
    # the native API around these routes keeps its own shape, and its model listing is not shadowed
    assert (await format_server.http.get("/v1/models")).json()["models"]
    assert (await format_server.http.get("/v1/clients/ghost")).json()["error"]["code"] == "client_not_found"


async def test_payload_too_large(format_settings: Settings) -> None:
    async with open_server(format_settings.model_copy(update={"max_body_mb": 1})) as server:
        big = b'{"instances": [' + b"1.0," * (1 << 19) + b"1.0]}"  # 2 MiB
        assert "larger than the server's limit of 1 MiB" in tf_error(
            await server.http.post("/v1/models/legacy:predict", content=big), 413)


async def test_openapi_documents_every_route(format_server: Server) -> None:
    paths = (await format_server.http.get("/openapi.json")).json()["paths"]
    for path, method in [("/v1/models/{name}:predict", "post"), ("/v1/models/{name}/versions/{version}:predict", "post"),
                         ("/v1/models/{name}", "get"), ("/v1/models/{name}/versions/{version}", "get"),
                         ("/v1/models/{name}/metadata", "get"), ("/v1/models/{name}/versions/{version}/metadata", "get"),
                         ("/v1/models", "get")]:
        assert method in paths[path], (path, method)
    predict_doc = paths["/v1/models/{name}:predict"]["post"]
    assert "requestBody" in predict_doc and {"200", "400", "404", "413", "503", "507"} <= set(predict_doc["responses"])
    assert predict_doc["responses"]["404"]["content"]["application/json"]["schema"]["properties"] == {
        "error": {"type": "string"}}

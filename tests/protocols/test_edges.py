"""Protocol edge cases: odd output dtypes, lossy V2 conversions, compressed and odd bodies, served versions."""

import gzip

import numpy as np
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.anyio

X = {"X-Client-Id": "edge"}


def tensor(datatype: str, data: list, shape: list[int]) -> dict:
    return {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}


async def test_bfloat16_outputs_are_answered_as_float32_and_string_outputs_are_refused(format_server: Server) -> None:
    assert (await format_server.http.put("/v1/clients/edge/model", json={"model": "odd_outputs"})).status_code == 200
    reply = await format_server.http.post("/v1/models/odd_outputs:predict", headers=X,
                                          json={"instances": [[1.0, 2.5]]})
    assert reply.status_code == 200 and reply.json() == {"predictions": [[2.0, 5.0]]}
    v2 = await format_server.http.post("/v2/models/odd_outputs/infer", headers=X,
                                       json=tensor("FP32", [1.0, 2.5], [1, 2]))
    assert v2.status_code == 200 and v2.json()["outputs"][0]["datatype"] == "FP32"
    text = await format_server.http.post("/v1/models/odd_outputs:predict", headers=X,
                                         json={"signature_name": "strings", "instances": [[1.0, 2.0]]})
    assert text.status_code == 400 and "only numeric or boolean tensors are served" in text.json()["error"]


async def test_the_versions_v2_reports_are_the_loaded_ones(format_server: Server) -> None:
    await format_server.http.put("/v1/clients/edge/model", json={"model": "signals", "version": 1})
    assert (await format_server.http.get("/v2/models/signals", headers=X)).json()["versions"] == ["1"]
    assert (await format_server.http.get("/v2/models/signals/versions/2/ready", headers=X)).status_code == 400
    await format_server.http.put("/v1/clients/edge/model", json={"model": "signals"})
    assert (await format_server.http.get("/v2/models/signals", headers=X)).json()["versions"] == ["2"]
    assert (await format_server.http.get("/v2/models/signals/versions/2/ready", headers=X)).status_code == 200
    index = (await format_server.http.post("/v2/repository/index", headers=X)).json()
    assert {e["name"]: e["version"] for e in index}["signals"] == "2"


async def test_v2_refuses_values_the_model_dtype_would_change(server: Server) -> None:
    await server.http.put("/v1/clients/edge/model", json={"model": "tiny"})
    exact = tensor("INT64", [3] * 32, [1, 32])
    assert (await server.http.post("/v2/models/tiny/infer", headers=X, json=exact)).status_code == 200
    for lossy in (tensor("INT64", [16777217] * 32, [1, 32]), tensor("FP64", [0.1] * 32, [1, 32])):
        reply = await server.http.post("/v2/models/tiny/infer", headers=X, json=lossy)
        assert reply.status_code == 400 and "cannot hold exactly" in reply.json()["error"]


async def test_v2_compressed_and_odd_bodies(server: Server) -> None:
    await server.http.put("/v1/clients/edge/model", json={"model": "tiny"})
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 32], "data": [' + b",".join([b"0.5"] * 32) + b"]}]}"
    zipped = await server.http.post("/v2/models/tiny/infer", content=gzip.compress(body),
                                    headers={**X, "Content-Encoding": "gzip"})
    plain = await server.http.post("/v2/models/tiny/infer", content=body, headers=X)
    assert zipped.status_code == 200
    np.testing.assert_array_equal(zipped.json()["outputs"][0]["data"], plain.json()["outputs"][0]["data"])
    for headers in ({"Content-Encoding": "br"}, {"Content-Encoding": "gzip"},
                    {"Inference-Header-Content-Length": "\u00b2".encode("latin-1")}):
        reply = await server.http.post("/v2/models/tiny/infer", content=body, headers={**X, **headers})
        assert reply.status_code == 400 and set(reply.json()) == {"error"}

"""Hostile and careless requests: every one a 4xx in its protocol's shape, never a 500, never a stall."""

import gzip
import json
import logging
import zlib

import numpy as np
import pytest

from app.api import create_app
from app.settings import Settings
from tests.conftest import Server
from tests.helpers import TOLERANCE
from tests.models import Reference

pytestmark = pytest.mark.anyio


def v2_input(values: np.ndarray, binary: bool = False) -> tuple[bytes, dict[str, str]]:
    """A V2 infer body for the tiny model's input ``x`` (JSON, or the binary tensor data extension)."""
    tensor = {"name": "x", "datatype": "FP32", "shape": list(values.shape)}
    if not binary:
        return json.dumps({"inputs": [{**tensor, "data": values.reshape(-1).tolist()}]}).encode(), {}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": values.nbytes}}]}).encode()
    return header + values.astype("<f4").tobytes(), {"Inference-Header-Content-Length": str(len(header))}


async def test_oversized_header_length_is_400_not_500(server: Server) -> None:
    await server.http.post("/v2/repository/models/tiny/load")
    body, _ = v2_input(np.zeros((1, 32), np.float32))
    for length in ("9" * 5000, "1" * 20, "١٢".encode(), "-1", str(len(body) + 1)):
        response = await server.http.post("/v2/models/tiny/infer", content=body,
                                          headers={"Inference-Header-Content-Length": length})
        assert response.status_code == 400 and "Inference-Header-Content-Length" in response.json()["error"]


@pytest.mark.parametrize("encoding,mangle,expected", [
    ("gzip", lambda z: z[:-6], "cut short"),                    # truncated: the stream never ends
    ("gzip", lambda z: z + b"junk after the end", "after the end"),
    ("gzip", lambda z: z[:-8] + bytes(4) + z[-4:], "not valid gzip"),  # a wrong CRC32
    ("deflate", lambda z: z[:-3], "cut short"),
    ("br", lambda z: z, "not supported"),
])
async def test_compressed_bodies_must_be_whole(server: Server, refs: dict[str, Reference], encoding: str, mangle,
                                              expected: str) -> None:
    await server.http.post("/v2/repository/models/tiny/load")
    body, _ = v2_input(refs["tiny"].inputs["x"])
    packed = zlib.compress(body) if encoding == "deflate" else gzip.compress(body)
    whole = await server.http.post("/v2/models/tiny/infer", content=packed,
                                   headers={"Content-Encoding": "deflate" if encoding == "deflate" else "gzip"})
    assert whole.status_code == 200, whole.text
    response = await server.http.post("/v2/models/tiny/infer", content=mangle(packed),
                                      headers={"Content-Encoding": encoding})
    assert response.status_code == 400 and expected in response.json()["error"], response.text
    native = await server.http.put("/v1/clients/n/model", content=mangle(gzip.compress(b'{"model": "tiny"}')),
                                   headers={"Content-Encoding": encoding})
    assert native.status_code == 422 and native.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
async def test_binary_tensors_must_be_finite(server: Server, value: float) -> None:
    await server.http.post("/v2/repository/models/tiny/load")
    values = np.zeros((1, 32), np.float32)
    values[0, 3] = value
    body, headers = v2_input(values, binary=True)
    response = await server.http.post("/v2/models/tiny/infer", content=body, headers=headers)
    assert response.status_code == 400 and "not finite" in response.json()["error"]


async def test_outputs_json_cannot_carry_are_refused_not_nulled(server: Server) -> None:
    huge = np.full((1, 32), 3.4e38, np.float32)  # finite in, overflowing to infinity inside the model
    await server.http.put("/v1/clients/default/model", json={"model": "tiny"})
    native = await server.http.post("/v1/clients/default/predict", json={"instances": huge.tolist()})
    assert native.status_code == 422 and native.json()["error"]["code"] == "output_not_finite"
    tfs = await server.http.post("/v1/models/tiny:predict", json={"instances": huge.tolist()})
    assert tfs.status_code == 400 and "not finite" in tfs.json()["error"]
    body, _ = v2_input(huge)
    v2 = await server.http.post("/v2/models/tiny/infer", content=body)
    assert v2.status_code == 400 and "not finite" in v2.json()["error"]
    binary_out = json.loads(body) | {"parameters": {"binary_data_output": True}}
    answered = await server.http.post("/v2/models/tiny/infer", json=binary_out)  # binary data carries infinity
    assert answered.status_code == 200
    length = int(answered.headers["inference-header-content-length"])
    assert not np.isfinite(np.frombuffer(answered.content[length:], "<f4")).all()  # NaN, carried as is


@pytest.mark.parametrize("integer", [9223372036854775807, 16777217, -16777217, 2**63 + 1, 2**64, -(2**63) - 1])
async def test_lossy_integers_are_refused_on_every_protocol(server: Server, integer: int) -> None:
    await server.http.put("/v1/clients/default/model", json={"model": "tiny"})
    row = [integer] + [0] * 31
    native = await server.http.post("/v1/clients/default/predict", json={"instances": [row]})
    assert native.status_code == 422 and native.json()["error"]["code"] == "invalid_input", native.text
    tfs = await server.http.post("/v1/models/tiny:predict", json={"instances": [row]})
    assert tfs.status_code == 400
    fits = await server.http.post("/v1/clients/default/predict", json={"instances": [[16777216] + [0] * 31]})
    assert fits.status_code == 200


async def test_a_client_gone_mid_body_is_counted_not_an_error(settings: Settings, caplog) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        messages = iter([{"type": "http.request", "body": b'{"model": ', "more_body": True},
                         {"type": "http.disconnect"}])
        sent = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "PUT", "path": "/v1/clients/a/model", "raw_path": b"/v1/clients/a/model",
                 "root_path": "", "scheme": "http", "query_string": b"", "server": ("127.0.0.1", 80),
                 "client": ("127.0.0.1", 5000), "http_version": "1.1", "asgi": {"version": "3.0"},
                 "headers": [(b"host", b"127.0.0.1"), (b"content-length", b"100")]}
        with caplog.at_level(logging.DEBUG, logger="slotserve"):
            await app(scope, receive, send)
        assert app.state.stats.client_disconnects == 1
        assert sent[0]["status"] == 400 and b"client_disconnected" in sent[1]["body"]
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "WITHOUT" not in r.message]
        assert any("disconnected before its body arrived" in r.message for r in caplog.records)


# ---- big bodies: decoded without Python objects, the same answers --------------------------------------------

async def test_big_bodies_give_the_same_answers_on_every_protocol(server: Server,
                                                                  refs: dict[str, Reference]) -> None:
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(6000, 32)).astype(np.float32)  # ~1.2 MB of JSON: the lean decoder's territory
    await server.http.put("/v1/clients/default/model", json={"model": "tiny"})
    small = await server.http.post("/v1/clients/default/predict", json={"instances": rows[:5].tolist()})
    native = await server.http.post("/v1/clients/default/predict", json={"instances": rows.tolist()})
    assert native.status_code == 200, native.text
    np.testing.assert_allclose(np.asarray(native.json()["predictions"])[:5], small.json()["predictions"],
                               atol=TOLERANCE, rtol=0)
    columns = await server.http.post("/v1/clients/default/predict",
                                     content=json.dumps({"inputs": rows.tolist()}, indent=1).encode())
    np.testing.assert_allclose(columns.json()["outputs"], native.json()["predictions"], atol=TOLERANCE, rtol=0)
    tfs = await server.http.post("/v1/models/tiny:predict", json={"instances": rows.tolist()})
    np.testing.assert_allclose(tfs.json()["predictions"], native.json()["predictions"], atol=TOLERANCE, rtol=0)
    body, _ = v2_input(rows)
    v2 = await server.http.post("/v2/models/tiny/infer", content=body)
    np.testing.assert_allclose(np.reshape(v2.json()["outputs"][0]["data"], (6000, 10)), native.json()["predictions"],
                               atol=TOLERANCE, rtol=0)
    assert server.app.state.budget.used == 0  # every lease was given back


@pytest.mark.parametrize("make,status", [
    (lambda rows: rows[:-1] + [rows[-1][:-1]], 422),           # ragged: the last row is short
    (lambda rows: rows[:3000] + [[r] for r in rows[3000:]], 422),  # a different depth halfway
    (lambda rows: [r + [1.5] for r in rows], 422),            # regular, but 33 wide for a 32-wide input
    (lambda rows: [[round(v * 1000) for v in r] for r in rows[:-1]] + [[16777217] + [0] * 31], 422),  # lossy
])
async def test_big_bodies_that_do_not_fit_are_refused(server: Server, make, status: int) -> None:
    rows = np.random.default_rng(5).normal(size=(6000, 32)).round(3).tolist()
    await server.http.put("/v1/clients/default/model", json={"model": "tiny"})
    response = await server.http.post("/v1/clients/default/predict", json={"instances": make(rows)})
    assert response.status_code == status and response.json()["error"]["code"] == "invalid_input", response.text[:300]


async def test_a_big_integer_body_for_an_integer_model(server: Server, refs: dict[str, Reference]) -> None:
    await server.http.put("/v1/clients/default/model", json={"model": "ints"})
    tokens = np.random.default_rng(6).integers(0, 50, (20000, 5))
    response = await server.http.post("/v1/clients/default/predict", json={"instances": tokens.tolist()})
    assert response.status_code == 200 and np.asarray(response.json()["predictions"]).shape == (20000, 2)
    small = await server.http.post("/v1/clients/default/predict", json={"instances": tokens[:3].tolist()})
    np.testing.assert_allclose(response.json()["predictions"][:3], small.json()["predictions"], atol=TOLERANCE)
    too_big = tokens.tolist()
    too_big[7][2] = 2**31  # out of int32's range
    refused = await server.http.post("/v1/clients/default/predict", json={"instances": too_big})
    assert refused.status_code == 422 and "cannot hold exactly" in refused.json()["error"]["message"]

"""Edge cases found in review: concurrent frees, odd models, odd values, oversized bodies."""

import asyncio

import numpy as np
import pytest

from app.settings import Settings
from tests.conftest import Server, open_server
from tests.helpers import TOLERANCE, assert_bytes, assert_rows_match, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio


async def test_two_slots_freeing_at_once_report_exact_figures(server: Server, refs: dict[str, Reference]) -> None:
    async def churn(client: str) -> list[dict]:
        bodies = []
        for i in range(8):
            model = ("four_mb", "six_mb")[i % 2]
            reply = await server.http.put(f"/v1/clients/{client}/model", json={"model": model})
            assert reply.status_code == 200, reply.text
            bodies.append(reply.json())
        return bodies

    for bodies in await asyncio.gather(churn("a"), churn("b"), churn("c")):
        for body in bodies[1:]:
            assert body["residue_bytes"] == 0
            assert_bytes(body["freed_bytes"], refs[body["previous_model"]].weight_bytes)


async def test_a_model_whose_output_drops_the_batch_dimension_is_refused(server: Server) -> None:
    reply = await server.http.put("/v1/clients/c/model", json={"model": "scalar"})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "model_invalid"
    assert "batch dimension" in reply.json()["error"]["message"]


async def test_a_damaged_compressed_archive_is_model_invalid(server: Server) -> None:
    reply = await server.http.put("/v1/clients/c/model", json={"model": "deflated"})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "model_invalid"


async def test_rows_of_different_lengths_are_answered_each_correctly(server: Server,
                                                                     refs: dict[str, Reference]) -> None:
    await server.http.put("/v1/clients/c/model", json={"model": "sequence", "max_delay_us": 20_000})
    rng = np.random.default_rng(5)
    rows = [rng.normal(size=(1, n, 4)).astype(np.float32) for n in (2, 5, 5, 9, 2, 1)]
    replies = await asyncio.gather(*(server.http.post("/v1/clients/c/predict", json={"instances": r.tolist()})
                                     for r in rows))
    model_reply = [np.asarray(r.json()["predictions"]) for r in replies]
    # each equals the same rows sent alone
    for row, batched in zip(rows, model_reply, strict=True):
        alone = await server.http.post("/v1/clients/c/predict", json={"instances": row.tolist()})
        np.testing.assert_allclose(batched, alone.json()["predictions"], atol=TOLERANCE, rtol=0)
    assert_rows_match((await server.http.post("/v1/clients/c/predict", json=rows_body(refs["sequence"]))).json(),
                      refs["sequence"])


async def test_a_request_bad_in_value_fails_alone(server: Server, refs: dict[str, Reference]) -> None:
    await server.http.put("/v1/clients/c/model", json={"model": "ints", "max_delay_us": 20_000})
    good, bad = rows_body(refs["ints"]), {"instances": [[1, 2, 3, 4, 200]]}  # the embedding has 50 entries
    replies = await asyncio.gather(*(server.http.post("/v1/clients/c/predict", json=bad if i == 3 else good)
                                     for i in range(8)))
    for i, reply in enumerate(replies):
        if i == 3:
            error = reply.json()["error"]
            assert reply.status_code == 422 and error["code"] == "invalid_input"
            assert "\n" not in error["message"] and "File " not in error["message"]
        else:
            assert reply.status_code == 200
            assert_rows_match(reply.json(), refs["ints"])


async def test_values_beyond_the_input_dtype_are_refused(server: Server) -> None:
    await server.http.put("/v1/clients/c/model", json={"model": "tiny"})
    reply = await server.http.post("/v1/clients/c/predict", json={"instances": [[1e39] * 32]})
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_input"


async def test_a_body_over_the_limit_is_413_before_it_is_read(settings: Settings) -> None:
    async with open_server(settings.model_copy(update={"max_body_mb": 1})) as server:
        await server.http.put("/v1/clients/c/model", json={"model": "tiny"})
        big = b'{"instances": [' + b",".join([b"[" + b",".join([b"0.5"] * 32) + b"]"] * 20_000) + b"]}"
        reply = await server.http.post("/v1/clients/c/predict", content=big)
        assert reply.status_code == 413 and reply.json()["error"]["code"] == "payload_too_large"
        ok = await server.http.post("/v1/clients/c/predict", json={"instances": [[0.5] * 32] * 2000})
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 2000


async def test_a_large_request_racing_an_unload_ends_instead_of_hanging(server: Server) -> None:
    from app.errors import SlotServeError

    for _ in range(5):
        await server.registry.load("racer", "tiny")
        big = {"instances": [[0.5] * 32] * 2000}  # decoded in a worker thread, so the unload can overtake it
        predicting = asyncio.ensure_future(server.registry.predict("racer", big))
        await asyncio.sleep(0)
        await server.registry.unload("racer")
        try:
            result = await asyncio.wait_for(predicting, timeout=30)
        except SlotServeError as exc:
            assert exc.code in ("client_not_found", "slot_busy")
        else:
            assert len(result["predictions"]) == 2000

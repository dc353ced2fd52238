"""Dynamic batching through HTTP: identical results, per-load settings, bad requests isolated, slots independent."""

import asyncio

import pytest

from tests.conftest import Server
from tests.helpers import assert_columns_match, assert_rows_match, columns_body, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio

MIXED = [slice(0, 1), slice(1, 3), slice(0, 5), slice(2, 3), slice(0, 4), slice(3, 5)]


async def test_batched_results_equal_keras_for_mixed_row_counts(server: Server, refs: dict[str, Reference]) -> None:
    response = await server.http.put("/v1/clients/c/model",
                                     json={"model": "pair", "max_batch_size": 64, "max_delay_us": 20_000})
    assert response.json()["batching"] == {"max_batch_size": 64, "max_delay_us": 20_000}
    ref = refs["pair"]
    bodies = [rows_body(ref, rows) if i % 2 else columns_body(ref, rows) for i, rows in enumerate(MIXED * 3)]
    replies = await asyncio.gather(*(server.http.post("/v1/clients/c/predict", json=b) for b in bodies))
    for i, (rows, reply) in enumerate(zip(MIXED * 3, replies, strict=True)):
        assert reply.status_code == 200, reply.text
        (assert_rows_match if i % 2 else assert_columns_match)(reply.json(), ref, rows)
    queue = server.registry.slots[response.json()["slot"]].loaded.queue
    assert queue.requests == len(bodies) and queue.calls < len(bodies)  # requests really shared calls


async def test_a_bad_request_never_fails_its_batchmates(server: Server, refs: dict[str, Reference]) -> None:
    await server.http.put("/v1/clients/c/model", json={"model": "tiny", "max_delay_us": 20_000})
    good, bad = rows_body(refs["tiny"]), {"instances": [[1.0] * 31]}
    replies = await asyncio.gather(*(server.http.post("/v1/clients/c/predict", json=good if i % 3 else bad)
                                     for i in range(12)))
    for i, reply in enumerate(replies):
        if i % 3:
            assert reply.status_code == 200
            assert_rows_match(reply.json(), refs["tiny"])
        else:
            assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_input"


async def test_one_slot_waiting_for_batchmates_never_delays_another(server: Server,
                                                                    refs: dict[str, Reference]) -> None:
    await server.http.put("/v1/clients/slow/model",
                          json={"model": "tiny", "max_batch_size": 1000, "max_delay_us": 1_000_000})
    await server.http.put("/v1/clients/fast/model", json={"model": "tiny2", "max_delay_us": 0})
    waiting = asyncio.ensure_future(server.http.post("/v1/clients/slow/predict", json=rows_body(refs["tiny"])))
    for _ in range(20):
        reply = await server.http.post("/v1/clients/fast/predict", json=rows_body(refs["tiny2"]))
        assert_rows_match(reply.json(), refs["tiny2"])
    assert not waiting.done()  # still waiting out its 1 s for batchmates
    assert_rows_match((await waiting).json(), refs["tiny"])


async def test_server_defaults_and_invalid_overrides(server: Server) -> None:
    body = (await server.http.put("/v1/clients/c/model", json={"model": "tiny"})).json()
    assert body["batching"] == {"max_batch_size": 64, "max_delay_us": 0}
    for bad in ({"model": "tiny", "max_batch_size": 0}, {"model": "tiny", "max_delay_us": -1},
                {"model": "tiny", "max_batch_size": "many"}):
        reply = await server.http.put("/v1/clients/c/model", json=bad)
        assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request"

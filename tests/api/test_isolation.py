"""One client's swaps never cost another client a request or a wrong answer."""

import asyncio

import pytest

from tests.conftest import Server
from tests.helpers import assert_bytes, assert_rows_match, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio


async def test_other_client_predicts_through_twenty_swaps(server: Server, refs: dict[str, Reference]) -> None:
    assert (await server.http.put("/v1/clients/steady/model", json={"model": "pair"})).status_code == 200
    assert (await server.http.put("/v1/clients/churn/model", json={"model": "tiny"})).status_code == 200
    done = asyncio.Event()
    answers, failures = 0, []

    async def swap_twenty_times() -> None:
        try:
            for i in range(20):
                model = "tiny2" if i % 2 == 0 else "tiny"
                response = await server.http.put("/v1/clients/churn/model", json={"model": model})
                assert response.status_code == 200, response.text
                assert response.json()["model"] == model
        finally:
            done.set()

    async def predict_until_done() -> None:
        nonlocal answers
        body = rows_body(refs["pair"])
        while not done.is_set() or answers == 0:
            response = await server.http.post("/v1/clients/steady/predict", json=body)
            if response.status_code != 200:
                failures.append(response.text)
                continue
            assert_rows_match(response.json(), refs["pair"])
            answers += 1

    await asyncio.gather(swap_twenty_times(), predict_until_done())
    assert failures == []
    assert answers >= 20
    record = (await server.http.get("/v1/clients/steady")).json()
    assert record["model"] == "pair"
    assert_bytes(record["memory"]["in_use_bytes"], refs["pair"].weight_bytes)

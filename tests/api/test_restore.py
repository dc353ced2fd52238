"""Restore at start-up, in process: what the state file remembers comes back, and until it has, readiness says so
and the remembered clients' predictions are held (not refused)."""

import asyncio

import numpy as np
import pytest

from app.registry import swaps
from app.settings import Settings
from tests.conftest import open_server
from tests.helpers import TOLERANCE
from tests.models import Reference

pytestmark = pytest.mark.anyio


async def test_readiness_is_503_and_predictions_are_held_until_the_restore_is_done(
        settings: Settings, refs: dict[str, Reference], monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_server(settings) as server:
        assert (await server.http.put("/v1/clients/a/model", json={"model": "tiny"})).status_code == 200
        assert (await server.http.put("/v1/clients/c/model",
                                      json={"model": "four_mb", "max_batch_size": 3})).status_code == 200
    # the next start: hold every restore's load until the test lets it go
    release, first_load = asyncio.Event(), swaps.first_load

    async def held_first_load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        await release.wait()
        return await first_load(*args, **kwargs)

    monkeypatch.setattr(swaps, "first_load", held_first_load)
    async with open_server(settings, restored=False) as server:
        http = server.http
        for _ in range(1000):  # until the restore has claimed the slots (it loads nothing yet)
            if server.registry.loaded_model("a") is not None:
                break
            await asyncio.sleep(0)
        assert (await http.get("/healthz")).status_code == 200 and (await http.get("/v2/health/live")).status_code == 200
        reply = await http.get("/readyz")
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "slot_busy", reply.text
        assert (await http.get("/v2/health/ready")).status_code == 503  # V2's flat error shape
        predicting = asyncio.ensure_future(http.post("/v1/clients/a/predict",
                                                     json={"instances": refs["tiny"].inputs["x"].tolist()}))
        v2 = asyncio.ensure_future(http.post("/v2/models/four_mb/infer", headers={"X-Client-Id": "c"}, json={
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [5, 256],
                        "data": refs["four_mb"].inputs["x"].reshape(-1).tolist()}]}))
        for _ in range(50):
            await asyncio.sleep(0)
        assert server.registry.loaded_model("a") == ("tiny", "loading")
        assert not predicting.done() and not v2.done()  # held while the model is on its way back
        release.set()
        await server.app.state.restoring
        assert (await http.get("/readyz")).status_code == 200
        np.testing.assert_allclose((await predicting).json()["predictions"], refs["tiny"].outputs["y"],
                                   atol=TOLERANCE, rtol=0)
        assert (await v2).status_code == 200
        assert (await http.get("/v1/clients/c")).json()["batching"]["max_batch_size"] == 3


async def test_with_a_shared_state_a_replica_is_ready_once_its_clients_have_their_slots(
        settings: Settings, refs: dict[str, Reference], pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = settings.model_copy(update={"state": pg_database, "replica_id": "r1"})
    async with open_server(shared) as server:
        assert (await server.http.put("/v1/clients/a/model", json={"model": "tiny"})).status_code == 200
    release, first_load = asyncio.Event(), swaps.first_load

    async def held_first_load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        await release.wait()
        return await first_load(*args, **kwargs)

    monkeypatch.setattr(swaps, "first_load", held_first_load)
    async with open_server(shared, restored=False) as server:
        http = server.http
        for _ in range(1000):
            if (await http.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.01)
        # in the ingress's ring while its client's model is still on its way back: the request waits here
        assert (await http.get("/readyz")).status_code == 200 and (await http.get("/v2/health/ready")).status_code == 200
        assert server.registry.loaded_model("a") == ("tiny", "loading") and not server.app.state.restoring.done()
        predicting = asyncio.ensure_future(http.post("/v1/clients/a/predict",
                                                     json={"instances": refs["tiny"].inputs["x"].tolist()}))
        for _ in range(50):
            await asyncio.sleep(0)
        assert not predicting.done()
        release.set()
        np.testing.assert_allclose((await predicting).json()["predictions"], refs["tiny"].outputs["y"],
                                   atol=TOLERANCE, rtol=0)

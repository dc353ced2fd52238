"""No prediction fails during a swap, on any protocol: native, TF Serving and V2 (JSON), through real HTTP.

Side-by-side swaps: the old model keeps answering while the new one loads (proved: answers come from the old model
while the client's phase is ``swapping``), and requests naming the new model wait for the switch. Replace swaps and
first loads: predictions are held (proved: they are still pending while the phase is ``replacing``/``loading``)
and then answered by the new model.
"""

import asyncio

import numpy as np
import pytest

from tests.conftest import Server
from tests.helpers import TOLERANCE
from tests.models import Reference

pytestmark = pytest.mark.anyio

CLIENT = {"X-Client-Id": "c"}


def phase(server: Server, client: str = "c") -> str | None:
    return (server.registry.loaded_model(client) or (None, None))[1]


async def outputs_of(server: Server, model: str, rows: np.ndarray) -> np.ndarray:
    """What ``model`` answers for ``rows``, asked through another client (then unloaded)."""
    assert (await server.http.put("/v1/clients/probe/model", json={"model": model})).status_code == 200
    got = (await server.http.post("/v1/clients/probe/predict", json={"instances": rows.tolist()})).json()
    await server.http.delete("/v1/clients/probe/model")
    return np.asarray(got["predictions"])


async def predict(server: Server, protocol: str, model: str, rows: np.ndarray):
    """(status, outputs) of one prediction for client c on ``protocol`` (V2 and TF Serving name ``model``)."""
    if protocol == "native":
        reply = await server.http.post("/v1/clients/c/predict", json={"instances": rows.tolist()})
        return reply.status_code, reply.json().get("predictions")
    if protocol == "tfserving":
        reply = await server.http.post(f"/v1/models/{model}:predict", json={"instances": rows.tolist()},
                                       headers=CLIENT)
        return reply.status_code, reply.json().get("predictions")
    tensor = {"name": "x", "datatype": "FP32", "shape": list(rows.shape), "data": rows.reshape(-1).tolist()}
    reply = await server.http.post(f"/v2/models/{model}/infer", json={"inputs": [tensor]}, headers=CLIENT)
    data = reply.json()["outputs"][0]["data"] if reply.status_code == 200 else None
    return reply.status_code, None if data is None else np.reshape(data, (len(rows), -1))


async def test_predictions_never_fail_through_20_side_by_side_swaps(server: Server,
                                                                    refs: dict[str, Reference]) -> None:
    rows = refs["four_mb"].inputs["x"]  # four_mb and six_mb both take 256-wide rows
    expected = {m: await outputs_of(server, m, rows) for m in ("four_mb", "six_mb")}
    assert (await server.http.put("/v1/clients/c/model", json={"model": "four_mb"})).status_code == 200
    current = {"model": "four_mb"}  # what the client asks for: the model of its latest swap
    done, failures = asyncio.Event(), []
    answered = {p: {"four_mb": 0, "six_mb": 0, "during_swap": 0} for p in ("native", "tfserving", "v2")}

    async def keep_predicting(protocol: str) -> None:
        while (not done.is_set() or sum(answered[protocol].values()) < 5) and len(failures) < 20:
            named = current["model"]
            status, got = await predict(server, protocol, named, rows)
            if status != 200:
                failures.append((protocol, named, status))
                continue
            by = [m for m, want in expected.items() if np.allclose(got, want, atol=TOLERANCE, rtol=0)]
            if not by or (protocol != "native" and by != [named]):  # the protocols name their model
                failures.append((protocol, named, "answered by another model"))
                continue
            answered[protocol][by[0]] += 1
            answered[protocol]["during_swap"] += phase(server) == "swapping"

    async def swap_back_and_forth() -> None:
        try:
            for i in range(20):
                new = ("six_mb", "four_mb")[i % 2]
                swap = asyncio.ensure_future(server.http.put("/v1/clients/c/model", json={"model": new}))
                while phase(server) != "swapping" and not swap.done():
                    await asyncio.sleep(0)
                current["model"] = new  # asked for by name once the swap is under way (before, it would be a 404)
                reply = await swap
                assert reply.status_code == 200 and reply.json()["strategy"] == "side_by_side", reply.text
        finally:
            done.set()

    await asyncio.gather(*(keep_predicting(p) for p in answered for _ in range(2)), swap_back_and_forth())
    assert failures == []
    for protocol, counts in answered.items():
        assert counts["four_mb"] and counts["six_mb"], (protocol, counts)
        assert counts["during_swap"], (protocol, counts)  # answered while the new model was still loading


async def test_replace_swaps_hold_predictions_on_every_protocol(server: Server, refs: dict[str, Reference]) -> None:
    rows = refs["nine_mb"].inputs["x"]  # nine_mb and nine_mb_b: no room for both, so every swap is a replace
    expected = {m: await outputs_of(server, m, rows) for m in ("nine_mb", "nine_mb_b")}
    assert (await server.http.put("/v1/clients/c/model", json={"model": "nine_mb"})).status_code == 200
    for i in range(5):
        new = ("nine_mb_b", "nine_mb")[i % 2]
        swap = asyncio.ensure_future(server.http.put("/v1/clients/c/model", json={"model": new}))
        for _ in range(100_000):
            if phase(server) == "replacing":
                break
            await asyncio.sleep(0)
        held = {p: asyncio.ensure_future(predict(server, p, new, rows)) for p in ("native", "tfserving", "v2")}
        for _ in range(50):
            await asyncio.sleep(0)
        # the proof: while the old model is freed and the new one loads, every protocol's prediction waits
        assert phase(server) == "replacing" and not any(h.done() for h in held.values())
        assert (await swap).json()["strategy"] == "replace"
        for protocol, request in held.items():
            status, got = await request
            assert status == 200, protocol
            np.testing.assert_allclose(got, expected[new], atol=TOLERANCE, rtol=0)


async def test_first_loads_hold_predictions_on_every_protocol(server: Server, refs: dict[str, Reference]) -> None:
    rows = refs["tiny"].inputs["x"]
    load = asyncio.ensure_future(server.http.put("/v1/clients/c/model", json={"model": "tiny"}))
    for _ in range(100_000):
        if phase(server) == "loading":
            break
        await asyncio.sleep(0)
    held = {p: asyncio.ensure_future(predict(server, p, "tiny", rows)) for p in ("native", "tfserving", "v2")}
    for _ in range(50):
        await asyncio.sleep(0)
    assert phase(server) == "loading" and not any(h.done() for h in held.values())
    assert (await load).status_code == 200
    for request in held.values():
        status, got = await request
        assert status == 200
        np.testing.assert_allclose(got, refs["tiny"].outputs["y"], atol=TOLERANCE, rtol=0)


async def test_the_repository_and_status_tell_the_truth_mid_swap(server: Server) -> None:
    await server.http.put("/v1/clients/c/model", json={"model": "four_mb"})
    swap = asyncio.ensure_future(server.http.put("/v1/clients/c/model", json={"model": "six_mb"}))
    for _ in range(100_000):
        if phase(server) == "swapping":
            break
        await asyncio.sleep(0)
    index = {e["name"]: e["state"] for e in (await server.http.post("/v2/repository/index", headers=CLIENT)).json()}
    status = await server.http.get("/v1/models/four_mb", headers=CLIENT)
    still = phase(server) == "swapping"
    await swap
    if still:  # the old model serves until the switch: READY, AVAILABLE
        assert index["four_mb"] == "READY"
        assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"

"""Swap strategies, failure paths, admission and the reclaim sentinel, through HTTP."""

import asyncio
import gc

import numpy as np
import pytest

from app.partitions import host_allocator_bytes
from app.settings import Settings
from tests.conftest import Server, open_server
from tests.helpers import TOLERANCE, assert_bytes, assert_rows_match, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio


async def put(server: Server, client: str, model: str):
    return await server.http.put(f"/v1/clients/{client}/model", json={"model": model})


async def loaded(server: Server, client: str, model: str) -> dict:
    response = await put(server, client, model)
    assert response.status_code == 200, response.text
    return response.json()


async def slot_of(server: Server, client: str) -> dict:
    record = (await server.http.get(f"/v1/clients/{client}")).json()
    return (await server.http.get("/v1/slots")).json()["slots"][record["slot"]]


@pytest.mark.parametrize("old,new,strategy", [
    ("four_mb", "six_mb", "side_by_side"),   # 4 MiB + 6 MiB (+10%) fits a 16 MiB slot
    ("six_mb", "four_mb", "side_by_side"),
    ("nine_mb", "nine_mb_b", "replace"),     # 9 MiB + 9 MiB (+10%) does not
])
async def test_strategy_is_chosen_from_the_sizes(server: Server, refs: dict[str, Reference], old: str, new: str,
                                                 strategy: str) -> None:
    await loaded(server, "c", old)
    body = await loaded(server, "c", new)
    assert body["strategy"] == strategy and body["previous_model"] == old
    assert_bytes(body["memory"]["in_use_bytes"], refs[new].weight_bytes)
    assert_bytes(body["freed_bytes"], refs[old].weight_bytes)
    assert body["residue_bytes"] == 0
    assert_rows_match((await server.http.post("/v1/clients/c/predict", json=rows_body(refs[new]))).json(), refs[new])


@pytest.mark.parametrize("old,bad,status,code", [
    ("four_mb", "unsafe", 422, "model_invalid"),   # side_by_side: fails while loading beside the old model
    ("four_mb", "lying", 507, "model_too_large"),  # side_by_side: admitted by its file, refused by its real size
    ("nine_mb", "lying", 507, "model_too_large"),  # replace: the old model is freed, then loaded again
])
async def test_a_failed_swap_keeps_the_previous_model_serving(server: Server, refs: dict[str, Reference], old: str,
                                                              bad: str, status: int, code: str) -> None:
    await loaded(server, "c", old)
    response = await put(server, "c", bad)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code and response.json()["error"]["serving"] == old
    record = (await server.http.get("/v1/clients/c")).json()
    assert record["model"] == old and record["state"] == "ready"
    assert_bytes(record["memory"]["in_use_bytes"], refs[old].weight_bytes)
    assert_rows_match((await server.http.post("/v1/clients/c/predict", json=rows_body(refs[old]))).json(), refs[old])
    assert (await slot_of(server, "c"))["residue_bytes"] == 0


@pytest.mark.parametrize("refused", ["big", "lying", "corrupt"])
async def test_a_refusal_leaves_the_slot_byte_for_byte_as_it_was(server: Server, refs: dict[str, Reference],
                                                                 refused: str) -> None:
    await loaded(server, "c", "four_mb")
    gc.collect()
    before, host_before = await slot_of(server, "c"), host_allocator_bytes()
    response = await put(server, "c", refused)
    assert response.status_code in (422, 507)
    gc.collect()
    assert await slot_of(server, "c") == before
    assert host_allocator_bytes() == host_before


async def test_a_refused_first_load_leaves_no_client_behind(server: Server) -> None:
    response = await put(server, "new", "lying")
    assert response.status_code == 507 and response.json()["error"]["serving"] is None
    assert (await server.http.get("/v1/clients/new")).status_code == 404
    slots = (await server.http.get("/v1/slots")).json()["slots"]
    assert all(s["state"] == "empty" and s["memory"]["in_use_bytes"] == 0 for s in slots)


async def test_side_by_side_swap_under_concurrent_predictions(server: Server, refs: dict[str, Reference]) -> None:
    await loaded(server, "c", "four_mb")
    body = rows_body(refs["four_mb"])  # both models take the same 256-wide rows
    expected = {"four_mb": refs["four_mb"].outputs["y"], "six_mb": np.asarray(await _outputs_of(server, "six_mb", body))}
    done, answers, failures = asyncio.Event(), {"four_mb": 0, "six_mb": 0}, []

    async def keep_predicting() -> None:
        while not done.is_set() or sum(answers.values()) < 5:
            response = await server.http.post("/v1/clients/c/predict", json=body)
            if response.status_code != 200:
                failures.append(response.text)
                continue
            got = np.asarray(response.json()["predictions"])
            matching = [name for name, want in expected.items() if np.allclose(got, want, atol=TOLERANCE, rtol=0)]
            if not matching:
                failures.append("an answer matching neither model")
            answers[matching[0] if matching else "four_mb"] += 1

    async def swap_back_and_forth() -> None:
        try:
            for model in ("six_mb", "four_mb", "six_mb"):
                assert (await loaded(server, "c", model))["strategy"] == "side_by_side"
        finally:
            done.set()

    await asyncio.gather(*(keep_predicting() for _ in range(3)), swap_back_and_forth())
    assert failures == []
    assert answers["four_mb"] > 0 and answers["six_mb"] > 0


async def until_held(server: Server, client: str) -> None:
    """Yield to the event loop until a replace swap holds ``client``'s predictions (its phase says so)."""
    for _ in range(100_000):
        if (server.registry.loaded_model(client) or ("", ""))[1] == "replacing":
            return
        await asyncio.sleep(0)
    raise AssertionError("the replace swap never held predictions")


async def test_replace_swap_holds_predictions_and_runs_them_on_the_new_model(
        server: Server, refs: dict[str, Reference]) -> None:
    await loaded(server, "c", "nine_mb")
    body = {"instances": refs["nine_mb"].inputs["x"].tolist()}
    expected = await _outputs_of(server, "nine_mb_b", body)
    swap = asyncio.ensure_future(put(server, "c", "nine_mb_b"))
    await until_held(server, "c")
    queued = [asyncio.ensure_future(server.http.post("/v1/clients/c/predict", json=body)) for _ in range(4)]
    swapped = await swap
    assert swapped.json()["strategy"] == "replace"
    for response in await asyncio.gather(*queued):
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["predictions"], expected, atol=TOLERANCE, rtol=0)


async def test_replace_gap_longer_than_the_busy_timeout_is_503_with_retry_after(
        settings: Settings, refs: dict[str, Reference]) -> None:
    async with open_server(settings.model_copy(update={"busy_timeout_s": 0.001})) as server:
        await loaded(server, "c", "nine_mb")
        swap = asyncio.ensure_future(put(server, "c", "nine_mb_b"))
        await until_held(server, "c")
        response = await server.http.post("/v1/clients/c/predict", json=rows_body(refs["nine_mb"]))
        assert response.status_code == 503 and response.json()["error"]["code"] == "slot_busy"
        assert response.headers["retry-after"] == "1"
        assert (await swap).status_code == 200


async def test_out_of_memory_at_inference_is_507_and_the_model_stays(server: Server,
                                                                     refs: dict[str, Reference]) -> None:
    await loaded(server, "hog", "hog")
    await loaded(server, "calm", "tiny")
    huge = {"instances": [[[1.0, 2.0]]] * 1024}  # 1024 rows x 32 MiB of temporaries: beyond this host
    response = await server.http.post("/v1/clients/hog/predict", json=huge)
    assert response.status_code == 507 and response.json()["error"]["code"] == "slot_out_of_memory"
    assert_rows_match((await server.http.post("/v1/clients/hog/predict", json=rows_body(refs["hog"]))).json(),
                      refs["hog"])
    assert_rows_match((await server.http.post("/v1/clients/calm/predict", json=rows_body(refs["tiny"]))).json(),
                      refs["tiny"])
    assert (await server.http.delete("/v1/clients/hog/model")).json()["residue_bytes"] == 0


async def test_compiled_model_loads_without_its_optimizer_state(server: Server, refs: dict[str, Reference]) -> None:
    body = await loaded(server, "c", "trained")
    assert_bytes(body["memory"]["in_use_bytes"], refs["trained"].weight_bytes)
    assert_rows_match((await server.http.post("/v1/clients/c/predict", json=rows_body(refs["trained"]))).json(),
                      refs["trained"])
    assert (await server.http.delete("/v1/clients/c/model")).json()["residue_bytes"] == 0


async def test_zero_residue_after_fifty_mixed_cycles(server: Server, refs: dict[str, Reference]) -> None:
    gc.collect()
    host_before = host_allocator_bytes()
    cycle = ["four_mb", "six_mb", "nine_mb", "nine_mb_b", "lying", "tiny", "corrupt", "trained", "big", "unsafe"]
    residues, strategies = [], set()
    await loaded(server, "steady", "pair")
    for i in range(50):
        model = cycle[i % len(cycle)]
        response = await put(server, "c", model)
        if response.status_code == 200:
            residues.append(response.json()["residue_bytes"])
            strategies.add(response.json()["strategy"])
            ref = refs[model]
            for rows in (slice(0, 1), slice(0, 3), slice(None)):  # varied batch sizes between swaps
                got = await server.http.post("/v1/clients/c/predict", json=rows_body(ref, rows))
                assert_rows_match(got.json(), ref, rows)
        if i % 7 == 6:
            unloaded = await server.http.delete("/v1/clients/c/model")
            assert unloaded.status_code == 200
            residues.append(unloaded.json()["residue_bytes"])
            assert unloaded.json()["memory"]["in_use_bytes"] == 0
    assert strategies == {"load", "side_by_side", "replace"}
    assert residues and set(residues) == {0}
    await server.http.delete("/v1/clients/c/model")
    await server.http.delete("/v1/clients/steady/model")
    slots = (await server.http.get("/v1/slots")).json()["slots"]
    assert all(s["residue_bytes"] == 0 and s["memory"]["in_use_bytes"] == 0 for s in slots)
    gc.collect()
    assert host_allocator_bytes() == host_before


async def _outputs_of(server: Server, model: str, body: dict) -> list:
    """What ``model`` answers for ``body``, asked through another client (then unloaded)."""
    await loaded(server, "probe", model)
    outputs = (await server.http.post("/v1/clients/probe/predict", json=body)).json()["predictions"]
    await server.http.delete("/v1/clients/probe/model")
    return outputs


async def test_predictions_during_a_first_load_wait_for_it(server: Server, refs: dict[str, Reference]) -> None:
    load = asyncio.ensure_future(put(server, "fresh", "tiny"))
    for _ in range(100_000):  # yield until the first load has claimed a slot
        await asyncio.sleep(0)
        if (await server.http.get("/v1/clients/fresh")).status_code == 200:
            break
    early = await server.http.post("/v1/clients/fresh/predict", json=rows_body(refs["tiny"]))
    loaded_reply = await load
    assert loaded_reply.status_code == 200, loaded_reply.text
    assert early.status_code == 200, early.text
    assert_rows_match(early.json(), refs["tiny"])

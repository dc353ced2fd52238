"""/metrics: every metric's name and labels, and values that move with loads, swaps, restores, unloads, batches and
requests; who may scrape; what never appears in a label. Scraped through real HTTP (ASGI) and read with
prometheus-client's own parser, as Prometheus would read it."""

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.settings import Settings
from app.state import SQLiteState, create_key
from tests.conftest import SLOT_MB, SLOTS, Server, open_server
from tests.helpers import assert_bytes, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
PHASES = ("empty", "loading", "ready", "swapping", "replacing", "unloading")
ALLOWED_LABELS = {"slot", "state", "protocol", "code", "strategy", "le"}


async def scrape(server: Server, **headers: str) -> Samples:
    response = await server.http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def slot_figures(samples: Samples, slot: int) -> dict[str, float]:
    return {kind: value(samples, f"slotserve_slot_memory_{kind}_bytes", slot=str(slot))
            for kind in ("limit", "in_use", "peak")}


async def load(server: Server, client: str, model: str) -> dict:
    reply = await server.http.put(f"/v1/clients/{client}/model", json={"model": model})
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_every_slot_has_its_figures_and_exactly_one_phase(server: Server) -> None:
    samples = await scrape(server)
    for slot in range(SLOTS):
        figures = slot_figures(samples, slot)
        assert figures["limit"] == SLOT_MB << 20 and 0 <= figures["in_use"] <= figures["peak"] <= figures["limit"]
        phases = {phase: value(samples, "slotserve_slot_state", slot=str(slot), state=phase) for phase in PHASES}
        assert phases == {**dict.fromkeys(PHASES, 0.0), "empty": 1.0}
        assert ("slotserve_residue_bytes_total", (("slot", str(slot)),)) in samples
    assert {label for _, labels in samples for label, _ in labels} <= ALLOWED_LABELS
    for name in ("slotserve_request_duration_seconds_count", "slotserve_model_load_seconds_count",
                 "slotserve_batch_size_count"):
        assert any(sample == name for sample, _ in samples), name


async def test_loads_swaps_and_unloads_move_the_slot_and_load_figures(server: Server,
                                                                     refs: dict[str, Reference]) -> None:
    before = await scrape(server)
    first = await load(server, "c", "nine_mb")
    slot = str(first["slot"])
    replaced = await load(server, "c", "nine_mb_b")  # 18 MiB do not fit a 16 MiB slot together: replace
    beside = await load(server, "c", "tiny")  # 9 MiB + tiny fit: side_by_side
    assert (first["strategy"], replaced["strategy"], beside["strategy"]) == ("load", "replace", "side_by_side")
    after = await scrape(server)
    for strategy in ("load", "replace", "side_by_side"):
        moved = (value(after, "slotserve_model_load_seconds_count", strategy=strategy)
                 - value(before, "slotserve_model_load_seconds_count", strategy=strategy))
        assert moved == 1, strategy
    assert value(after, "slotserve_model_load_seconds_sum", strategy="load") > 0
    assert_bytes(int(value(after, "slotserve_slot_memory_in_use_bytes", slot=slot)), refs["tiny"].weight_bytes)
    assert value(after, "slotserve_slot_memory_peak_bytes", slot=slot) >= refs["tiny"].weight_bytes
    assert value(after, "slotserve_slot_state", slot=slot, state="ready") == 1
    assert value(after, "slotserve_slot_state", slot=slot, state="empty") == 0

    assert (await server.http.delete("/v1/clients/c/model")).status_code == 200
    unloaded = await scrape(server)
    listed = {s["slot"]: s for s in (await server.http.get("/v1/slots")).json()["slots"]}
    assert value(unloaded, "slotserve_slot_state", slot=slot, state="empty") == 1
    assert slot_figures(unloaded, int(slot))["in_use"] == listed[int(slot)]["memory"]["in_use_bytes"]
    assert value(unloaded, "slotserve_residue_bytes_total", slot=slot) == listed[int(slot)]["residue_bytes"]
    assert value(unloaded, "slotserve_model_load_seconds_count", strategy="load") == \
        value(after, "slotserve_model_load_seconds_count", strategy="load")  # an unload is not a load


async def test_batch_sizes_count_rows_per_model_call(server: Server, refs: dict[str, Reference]) -> None:
    await load(server, "c", "tiny")
    before = await scrape(server)
    reply = await server.http.post("/v1/clients/c/predict", json=rows_body(refs["tiny"], slice(0, 3)))
    assert reply.status_code == 200, reply.text
    after = await scrape(server)
    assert value(after, "slotserve_batch_size_count") - value(before, "slotserve_batch_size_count") == 1
    assert value(after, "slotserve_batch_size_sum") - value(before, "slotserve_batch_size_sum") == 3
    bucket = "slotserve_batch_size_bucket"
    assert value(after, bucket, le="2.0") == value(before, bucket, le="2.0")  # 3 rows: not in the le=2 bucket
    assert value(after, bucket, le="4.0") - value(before, bucket, le="4.0") == 1

    one_row = rows_body(refs["tiny"], slice(0, 1))
    replies = await asyncio.gather(*(server.http.post("/v1/clients/c/predict", json=one_row) for _ in range(8)))
    assert all(r.status_code == 200 for r in replies)
    together = await scrape(server)
    calls = value(together, "slotserve_batch_size_count") - value(after, "slotserve_batch_size_count")
    assert value(together, "slotserve_batch_size_sum") - value(after, "slotserve_batch_size_sum") == 8  # every row
    assert 1 <= calls <= 8  # batches may have stacked some of them


async def test_requests_are_counted_by_protocol_and_status(server: Server) -> None:
    asked = [("native", "GET", "/v1/slots"), ("native", "GET", "/v1/models"), ("v2", "GET", "/v2"),
             ("v2", "GET", "/v2/models/tiny/ready"), ("tfserving", "GET", "/v1/models/tiny"),
             ("other", "GET", "/healthz"), ("other", "GET", "/no-such-route"), ("native", "GET", "/v1/clients/-bad")]
    before = await scrape(server)
    expected: dict[tuple[str, str], int] = {("other", "200"): 1}  # the first scrape counts once it has answered
    for protocol, method, path in asked:
        status = (await server.http.request(method, path)).status_code
        expected[(protocol, str(status))] = expected.get((protocol, str(status)), 0) + 1
    after = await scrape(server)
    assert ("other", "404") in expected and ("native", "200") in expected and ("v2", "200") in expected
    for (protocol, code), count in expected.items():
        moved = (value(after, "slotserve_requests_total", protocol=protocol, code=code)
                 - value(before, "slotserve_requests_total", protocol=protocol, code=code))
        assert moved == count, (protocol, code)
    for protocol in ("native", "v2", "tfserving", "other"):
        answered = sum(n for (p, _), n in expected.items() if p == protocol)
        assert value(after, "slotserve_request_duration_seconds_count", protocol=protocol) - value(
            before, "slotserve_request_duration_seconds_count", protocol=protocol) == answered, protocol


async def test_restores_are_their_own_strategy_and_apps_count_apart(settings: Settings) -> None:
    async with open_server(settings) as first:
        await load(first, "alice", "tiny")
        assert value(await scrape(first), "slotserve_requests_total", protocol="native", code="200") == 1
    async with open_server(settings) as second:  # the state file remembers alice: she is restored
        samples = await scrape(second)
        assert value(samples, "slotserve_model_load_seconds_count", strategy="restore") == 1
        assert value(samples, "slotserve_model_load_seconds_count", strategy="load") == 0
        assert value(samples, "slotserve_requests_total", protocol="native", code="200") == 0  # not the first's
        text = (await second.http.get("/metrics")).text
        assert "alice" not in text and "tiny" not in text  # no client id, no model name


async def test_with_keys_only_an_admin_may_scrape(settings: Settings, tmp_path: Path) -> None:
    store = SQLiteState(settings.state)
    tenant, admin = create_key(store, "alice")[0], create_key(store, "ops", admin=True)[0]
    store.close()
    async with open_server(settings) as server:
        assert (await server.http.get("/metrics")).status_code == 401
        refused = await server.http.get("/metrics", headers={"Authorization": f"Bearer {tenant}"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert value(await scrape(server, Authorization=f"Bearer {admin}"), "slotserve_slot_state", slot="0",
                     state="empty") == 1


async def test_open_mode_serves_metrics_to_loopback_only(server: Server) -> None:
    assert (await server.http.get("/metrics")).status_code == 200
    assert (await server.http.get("/metrics", headers={"Host": "metrics.example.com"})).status_code == 403


async def test_the_openapi_documents_metrics_as_text_behind_a_key(server: Server) -> None:
    operation = (await server.http.get("/openapi.json")).json()["paths"]["/metrics"]["get"]
    assert "text/plain" in operation["responses"]["200"]["content"]
    assert operation["security"] == [{"APIKey": []}]
    assert {"401", "403"} <= set(operation["responses"])

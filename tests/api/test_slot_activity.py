"""What the /ui page reads besides the slots' memory: each slot's request count (``predictions_total``), who the key
is (``/v1/whoami``), and the page's own files, served by the app with a policy that keeps the browser on it."""

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from app.settings import Settings
from app.state import SQLiteState, create_key
from tests.conftest import Server, open_server
from tests.helpers import rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def totals(server: Server, headers: dict[str, str] | None = None) -> list[int | None]:
    return [s["predictions_total"] for s in (await server.http.get("/v1/slots", headers=headers)).json()["slots"]]


async def test_each_slot_counts_the_requests_its_models_answered(server: Server, refs: dict[str, Reference]) -> None:
    assert await totals(server) == [0, 0, 0, 0]
    a = (await server.http.put("/v1/clients/a/model", json={"model": "tiny"})).json()["slot"]
    b = (await server.http.put("/v1/clients/b/model", json={"model": "pair"})).json()["slot"]
    for _ in range(3):
        assert (await server.http.post("/v1/clients/a/predict", json=rows_body(refs["tiny"]))).status_code == 200
    assert (await server.http.post("/v1/clients/b/predict", json=rows_body(refs["pair"]))).status_code == 200
    # a request the model never answers (refused before batching) is not counted
    assert (await server.http.post("/v1/clients/a/predict", json={"instances": [[1.0]]})).status_code == 422
    counted = await totals(server)
    assert (counted[a], counted[b]) == (3, 1) and sum(counted) == 4
    # the V2 protocol goes through the same registry, and counts the same way
    name = next(iter(refs["tiny"].inputs))
    v2 = {"inputs": [{"name": name, "datatype": "FP32", "shape": [1, 32], "data": [0.5] * 32}]}
    assert (await server.http.post("/v2/models/tiny/infer", json=v2, headers={"X-Client-Id": "a"})).status_code == 200
    assert (await totals(server))[a] == 4
    # a swap and an unload keep the client's count; the next client to claim the slot starts from 0 (its count is
    # its own: no earlier holder's activity shows through it)
    assert (await server.http.put("/v1/clients/a/model", json={"model": "wide"})).status_code == 200
    assert (await server.http.post("/v1/clients/a/predict", json=rows_body(refs["wide"]))).status_code == 200
    assert (await totals(server))[a] == 5
    assert (await server.http.delete("/v1/clients/a/model")).status_code == 200
    assert (await totals(server))[a] == 5
    assert (await server.http.put("/v1/clients/z/model", json={"model": "tiny"})).json()["slot"] == a
    assert (await totals(server))[a] == 0


async def test_whoami_in_open_mode(server: Server) -> None:
    assert (await server.http.get("/v1/whoami")).json() == {"client": None, "admin": True}


@pytest.fixture
async def keyed(settings: Settings) -> AsyncIterator[tuple[Server, dict[str, str]]]:
    store = SQLiteState(settings.state)
    keys = {name: create_key(store, name, admin=name == "ops")[0] for name in ("alice", "bob", "ops")}
    store.close()
    async with open_server(settings) as opened:
        yield opened, keys


async def test_whoami_names_the_keys_client(keyed: tuple[Server, dict[str, str]]) -> None:
    server, keys = keyed
    assert (await server.http.get("/v1/whoami", headers=bearer(keys["alice"]))).json() == {"client": "alice",
                                                                                          "admin": False}
    assert (await server.http.get("/v1/whoami", headers=bearer(keys["ops"]))).json() == {"client": "ops",
                                                                                        "admin": True}
    for headers in ({}, bearer("ssk_not-a-key")):
        refused = await server.http.get("/v1/whoami", headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthenticated"


async def test_a_tenant_sees_only_its_own_slots_activity(keyed: tuple[Server, dict[str, str]],
                                                         refs: dict[str, Reference]) -> None:
    server, keys = keyed
    alice, bob = bearer(keys["alice"]), bearer(keys["bob"])
    a = (await server.http.put("/v1/clients/alice/model", json={"model": "tiny"}, headers=alice)).json()["slot"]
    b = (await server.http.put("/v1/clients/bob/model", json={"model": "tiny"}, headers=bob)).json()["slot"]
    for _ in range(2):
        assert (await server.http.post("/v1/clients/bob/predict", json=rows_body(refs["tiny"]),
                                       headers=bob)).status_code == 200
    seen_by_alice = await totals(server, alice)
    assert seen_by_alice[a] == 0 and seen_by_alice[b] is None
    assert all(t is None for i, t in enumerate(seen_by_alice) if i != a)  # free slots keep past clients' counts
    assert (await totals(server, bob))[b] == 2
    assert (await totals(server, bearer(keys["ops"])))[b] == 2 and None not in await totals(server, bearer(keys["ops"]))
    # a free slot's figures are its last client's: a tenant sees them rounded, as an occupied slot's
    assert (await server.http.delete("/v1/clients/bob/model", headers=bob)).status_code == 200
    freed = (await server.http.get("/v1/slots", headers=alice)).json()["slots"][b]
    exact = (await server.http.get("/v1/slots", headers=bearer(keys["ops"]))).json()["slots"][b]
    assert freed["state"] == "empty" and freed["client"] is None and exact["memory"]["peak_bytes"] > 0
    assert freed["memory"]["peak_bytes"] % (1 << 20) == 0 and freed["memory"]["peak_bytes"] >= exact["memory"]["peak_bytes"]


async def test_the_page_and_its_assets_need_no_key_and_stay_out_of_the_openapi(settings: Settings) -> None:
    async with open_server(settings.model_copy(update={"admin_key": SecretStr("ui-admin-key-" + "u" * 32)})) as server:
        assert (await server.http.get("/v1/slots")).status_code == 401  # authentication is on
        page = await server.http.get("/ui")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "ui/assets/ui.js" in page.text and "ui/assets/ui.css" in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
        for name, kind in (("ui.js", "text/javascript"), ("api.js", "text/javascript"),
                           ("slots.js", "text/javascript"), ("ui.css", "text/css")):
            asset = await server.http.get(f"/ui/assets/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
            assert "://" not in asset.text  # no other host, ever
        for missing in ("/ui/assets/index.html", "/ui/assets/nope.js", "/ui/assets/..%2Fui.py"):
            refused = await server.http.get(missing)
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found", missing
        head = await server.http.head("/ui")
        assert head.status_code == 200 and head.content == b""
        posted = await server.http.post("/ui")
        assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"
        paths = (await server.http.get("/openapi.json")).json()["paths"]
        assert not [p for p in paths if p.startswith("/ui")] and "/v1/whoami" in paths

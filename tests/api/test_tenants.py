"""Tenants: API keys, ownership on every protocol, what a tenant may see, and the open mode's Host/Origin checks.

Through real HTTP (ASGI) against a server whose state file holds keys for two tenants (alice, bob) and an admin
(ops), made exactly as ``slotserve keys add`` makes them.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from app.settings import Settings
from app.state import SQLiteState, create_key
from tests.conftest import Server, open_server
from tests.helpers import TOLERANCE, assert_bytes, assert_rows_match, rows_body
from tests.models import Reference

pytestmark = pytest.mark.anyio

NATIVE, FLAT = "native", "flat"
PROTECTED = [  # (method, path, error shape): every route that needs a key
    ("GET", "/v1/models", NATIVE), ("GET", "/v1/slots", NATIVE), ("GET", "/v1/clients/alice", NATIVE),
    ("PUT", "/v1/clients/alice/model", NATIVE), ("POST", "/v1/clients/alice/predict", NATIVE),
    ("DELETE", "/v1/clients/alice/model", NATIVE), ("PUT", "/v1/clients/-not-a-name/model", NATIVE),
    ("GET", "/v2", FLAT), ("GET", "/v2/models/tiny", FLAT), ("GET", "/v2/models/tiny/ready", FLAT),
    ("POST", "/v2/models/tiny/infer", FLAT), ("POST", "/v2/models/tiny/versions/1/infer", FLAT),
    ("POST", "/v2/repository/index", FLAT), ("POST", "/v2/repository/models/tiny/load", FLAT),
    ("POST", "/v2/repository/models/tiny/unload", FLAT),
    ("POST", "/v1/models/tiny:predict", FLAT), ("GET", "/v1/models/tiny", FLAT),
    ("GET", "/v1/models/tiny/metadata", FLAT), ("GET", "/v1/models/tiny/versions/1", FLAT),
    ("POST", "/v1/models/tiny:classify", FLAT),
]
PUBLIC = ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/docs", "/redoc", "/openapi.json"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_refused(response: httpx.Response, status: int, shape: str = NATIVE) -> str:
    """The error in its protocol's shape; returns its message."""
    assert response.status_code == status, response.text
    body = response.json()
    if shape == FLAT:
        assert set(body) == {"error"} and isinstance(body["error"], str), body
        return body["error"]
    code = {401: "unauthenticated", 403: "forbidden"}[status]
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]["message"]


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    """alice and bob (tenants) and ops (admin), stored in the server's state file."""
    store = SQLiteState(settings.state)
    made = {name: create_key(store, name, admin=name == "ops")[0] for name in ("alice", "bob", "ops")}
    store.close()
    return made


@pytest.fixture
async def server(settings: Settings, keys: dict[str, str]) -> AsyncIterator[Server]:
    async with open_server(settings) as opened:
        yield opened


async def load(server: Server, key: str, client: str, model: str) -> dict:
    reply = await server.http.put(f"/v1/clients/{client}/model", json={"model": model}, headers=bearer(key))
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.parametrize("method,path,shape", PROTECTED)
async def test_every_protected_route_is_401_without_a_valid_key(server: Server, method: str, path: str,
                                                                shape: str) -> None:
    for headers in ({}, bearer("ssk_not-a-key"), {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
                    {"Authorization": "Bearer"}):
        response = await server.http.request(method, path, headers=headers)
        message = assert_refused(response, 401, shape)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "not-a-key" not in message and "YWxp" not in message  # never echoes what was sent


async def test_every_operation_the_openapi_marks_as_keyed_refuses_no_key(server: Server) -> None:
    """Not a fixed list: every operation of the live OpenAPI, so a route added without authentication fails here."""
    spec = (await server.http.get("/openapi.json")).json()
    checked = 0
    for path, operations in spec["paths"].items():
        concrete = (path.replace("{client}", "alice").replace("{name}", "tiny").replace("{version}", "1")
                    .replace("{verb}", "classify"))
        for method, operation in operations.items():
            if "security" not in operation:
                assert path in PUBLIC, f"{method} {path} needs no key but is not a health route"
                continue
            response = await server.http.request(method.upper(), concrete)
            assert response.status_code == 401, f"{method} {path}: {response.status_code}"
            checked += 1
    assert checked > 20  # every native, V2 and TF Serving operation


@pytest.mark.parametrize("path", PUBLIC)
async def test_health_and_docs_need_no_key(server: Server, path: str) -> None:
    assert (await server.http.get(path)).status_code == 200


async def test_native_routes_refuse_another_tenants_client(server: Server, keys: dict[str, str],
                                                           refs: dict[str, Reference]) -> None:
    await load(server, keys["alice"], "alice", "tiny")
    bob = bearer(keys["bob"])
    for method, path, body in (("POST", "/v1/clients/alice/predict", rows_body(refs["tiny"])),
                               ("PUT", "/v1/clients/alice/model", {"model": "tiny2"}),
                               ("DELETE", "/v1/clients/alice/model", None),
                               ("GET", "/v1/clients/alice", None),
                               ("GET", "/v1/clients/nobody-yet", None)):  # 403 whether or not it exists
        assert_refused(await server.http.request(method, path, json=body, headers=bob), 403)
    await _alice_still_serves_tiny(server, keys, refs)


async def test_protocol_routes_refuse_x_client_id_of_another_tenant(server: Server, keys: dict[str, str],
                                                                    refs: dict[str, Reference]) -> None:
    await load(server, keys["alice"], "alice", "tiny")
    as_alice = {**bearer(keys["bob"]), "X-Client-Id": "alice"}
    v2_body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 32], "data": [0.0] * 32}]}
    for method, path, body in (("POST", "/v2/models/tiny/infer", v2_body),
                               ("POST", "/v2/repository/models/tiny2/load", None),
                               ("POST", "/v2/repository/models/tiny/unload", None),
                               ("GET", "/v2/models/tiny", None),
                               ("POST", "/v1/models/tiny:predict", rows_body(refs["tiny"])),
                               ("GET", "/v1/models/tiny", None),
                               ("GET", "/v1/models/tiny/metadata", None)):
        assert_refused(await server.http.request(method, path, json=body, headers=as_alice), 403, FLAT)
    # without the header bob acts as bob, who has loaded nothing: alice's model is not his to use
    mine = await server.http.post("/v2/models/tiny/infer", json=v2_body, headers=bearer(keys["bob"]))
    assert mine.status_code == 400 and "client 'bob'" in mine.json()["error"]
    tfs = await server.http.post("/v1/models/tiny:predict", json=rows_body(refs["tiny"]), headers=bearer(keys["bob"]))
    assert tfs.status_code == 404
    await _alice_still_serves_tiny(server, keys, refs)


async def test_a_tenant_acts_as_itself_on_every_protocol(server: Server, keys: dict[str, str],
                                                         refs: dict[str, Reference]) -> None:
    alice = bearer(keys["alice"])
    loaded = await server.http.post("/v2/repository/models/tiny/load", headers=alice)
    assert loaded.status_code == 200, loaded.text
    assert (await server.http.get("/v1/clients/alice", headers=alice)).json()["model"] == "tiny"
    named_self = {**alice, "X-Client-Id": "alice"}  # naming itself is allowed
    tfs = await server.http.post("/v1/models/tiny:predict", json=rows_body(refs["tiny"]), headers=named_self)
    assert_rows_match(tfs.json(), refs["tiny"])
    value = refs["tiny"].inputs["x"]
    v2 = await server.http.post("/v2/models/tiny/infer", headers=alice, json={"inputs": [
        {"name": "x", "datatype": "FP32", "shape": list(value.shape), "data": value.reshape(-1).tolist()}]})
    np.testing.assert_allclose(np.reshape(v2.json()["outputs"][0]["data"], (5, 10)), refs["tiny"].outputs["y"],
                               atol=TOLERANCE, rtol=0)
    assert (await server.http.post("/v2/repository/models/tiny/unload", headers=alice)).status_code == 200


async def test_an_admin_key_acts_for_any_client_on_every_protocol(server: Server, keys: dict[str, str],
                                                                  refs: dict[str, Reference]) -> None:
    await load(server, keys["alice"], "alice", "tiny")
    ops = bearer(keys["ops"])
    native = await server.http.post("/v1/clients/alice/predict", json=rows_body(refs["tiny"]), headers=ops)
    assert_rows_match(native.json(), refs["tiny"])
    tfs = await server.http.post("/v1/models/tiny:predict", json=rows_body(refs["tiny"]),
                                 headers={**ops, "X-Client-Id": "alice"})
    assert_rows_match(tfs.json(), refs["tiny"])
    status = await server.http.get("/v1/models/tiny", headers={**ops, "X-Client-Id": "alice"})
    assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"
    swapped = await server.http.post("/v2/repository/models/tiny2/load", headers={**ops, "X-Client-Id": "alice"})
    assert swapped.status_code == 200
    assert (await server.http.get("/v1/clients/alice", headers=ops)).json()["model"] == "tiny2"
    slots = (await server.http.get("/v1/slots", headers=ops)).json()["slots"]
    assert [(s["client"], s["model"]) for s in slots if s["client"]] == [("alice", "tiny2")]
    assert (await server.http.delete("/v1/clients/alice/model", headers=ops)).status_code == 200


async def test_a_tenant_sees_other_slots_only_as_occupied(server: Server, keys: dict[str, str],
                                                          refs: dict[str, Reference]) -> None:
    await load(server, keys["alice"], "alice", "pair")
    await load(server, keys["bob"], "bob", "tiny")
    response = await server.http.get("/v1/slots", headers=bearer(keys["bob"]))
    assert "alice" not in response.text and "pair" not in response.text
    slots = response.json()["slots"]
    mine = [s for s in slots if s["client"] == "bob"]
    assert len(mine) == 1 and mine[0]["model"] == "tiny" and mine[0]["state"] == "ready"
    others = [s for s in slots if s["client"] is None]
    assert sorted(s["state"] for s in others) == ["empty", "empty", "occupied"]
    occupied = next(s for s in others if s["state"] == "occupied")
    assert occupied["model"] is None
    # how full it is, rounded up to a 64th of the slot (1 MiB here), so the figure does not name the model either
    assert occupied["memory"]["in_use_bytes"] == occupied["memory"]["peak_bytes"] == 1 << 20
    full = (await server.http.get("/v1/slots", headers=bearer(keys["ops"]))).json()["slots"][occupied["slot"]]
    assert full["client"] == "alice"
    assert_bytes(full["memory"]["in_use_bytes"], refs["pair"].weight_bytes)
    index = await server.http.post("/v2/repository/index", headers=bearer(keys["bob"]))
    assert "alice" not in index.text
    assert {e["name"]: e["state"] for e in index.json()}["pair"] == "UNAVAILABLE"
    models = await server.http.get("/v1/models", headers=bearer(keys["bob"]))  # the store is open to every key
    assert "pair" in {m["name"] for m in models.json()["models"]}


async def test_a_revoked_key_is_refused_on_the_next_request(server: Server, settings: Settings,
                                                            keys: dict[str, str]) -> None:
    alice = bearer(keys["alice"])
    assert (await server.http.get("/v1/models", headers=alice)).status_code == 200
    other_process = SQLiteState(settings.state)  # another connection, as `slotserve keys revoke` opens
    assert other_process.revoke_keys("alice") == 1
    other_process.close()
    assert_refused(await server.http.get("/v1/models", headers=alice), 401)
    assert (await server.http.get("/v1/models", headers=bearer(keys["bob"]))).status_code == 200


async def test_duplicate_x_client_id_is_refused_not_first_wins(server: Server, keys: dict[str, str]) -> None:
    headers = [("Authorization", f"Bearer {keys['ops']}"), ("X-Client-Id", "alice"), ("X-Client-Id", "bob")]
    for method, path in (("POST", "/v2/repository/models/tiny/load"), ("GET", "/v1/models/tiny")):
        message = assert_refused(await server.http.request(method, path, headers=headers), 400, FLAT)
        assert "one X-Client-Id" in message
    slots = (await server.http.get("/v1/slots", headers=bearer(keys["ops"]))).json()["slots"]
    assert all(s["client"] is None for s in slots)


async def test_keys_are_stored_only_as_digests(settings: Settings, keys: dict[str, str]) -> None:
    store = SQLiteState(settings.state)
    assert {r.client for r in store.active_keys()} == {"alice", "bob", "ops"}
    store.close()
    stored = b"".join(p.read_bytes() for p in Path(settings.state).parent.glob("state.db*"))
    for key in keys.values():
        assert key.encode() not in stored and key[4:].encode() not in stored
    assert all(len(key) >= 4 + 43 for key in keys.values())  # 256 random bits, URL-safe
    assert Path(settings.state).stat().st_mode & 0o077 == 0  # readable by its owner only


async def test_openapi_declares_the_bearer_scheme(server: Server) -> None:
    spec = (await server.http.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert any(s == {"type": "http", "scheme": "bearer", **({"description": s["description"]} if "description" in s
                                                            else {})} for s in schemes.values())
    predict = spec["paths"]["/v1/clients/{client}/predict"]["post"]
    assert predict["security"] and "401" in predict["responses"] and "403" in predict["responses"]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert "security" not in spec["paths"]["/v2/health/ready"]["get"]


async def _alice_still_serves_tiny(server: Server, keys: dict[str, str], refs: dict[str, Reference]) -> None:
    alice = bearer(keys["alice"])
    record = (await server.http.get("/v1/clients/alice", headers=alice)).json()
    assert record["model"] == "tiny" and record["state"] == "ready"
    got = await server.http.post("/v1/clients/alice/predict", json=rows_body(refs["tiny"]), headers=alice)
    assert_rows_match(got.json(), refs["tiny"])


# ---- open mode (no keys): loopback Host only, no cross-site state changes ------------------------------------

async def test_open_mode_answers_loopback_hosts_only(settings: Settings) -> None:
    async with open_server(settings) as server:
        for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "localhost:1234"):
            assert (await server.http.get("/v1/models", headers={"Host": host})).status_code == 200
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "10.0.0.5:8000"):
            assert_refused(await server.http.get("/v1/models", headers={"Host": host}), 403)
            assert_refused(await server.http.post("/v2/repository/index", headers={"Host": host}), 403, FLAT)
        assert (await server.http.get("/healthz", headers={"Host": "evil.example"})).status_code == 200
    async with open_server(settings.model_copy(update={"allowed_hosts": ["models.internal"]})) as server:
        assert (await server.http.get("/v1/slots", headers={"Host": "models.internal:8000"})).status_code == 200
        assert_refused(await server.http.get("/v1/slots", headers={"Host": "evil.example"}), 403)


async def test_open_mode_refuses_cross_site_state_changes(settings: Settings, refs: dict[str, Reference]) -> None:
    async with open_server(settings) as server:
        evil = {"Origin": "http://evil.example"}
        text_plain = {**evil, "Content-Type": "text/plain"}  # a "simple" request: no CORS preflight would stop it
        for method, path, shape in (("PUT", "/v1/clients/c/model", NATIVE), ("POST", "/v1/clients/c/predict", NATIVE),
                                    ("DELETE", "/v1/clients/c/model", NATIVE),
                                    ("POST", "/v2/repository/models/tiny/load", FLAT),
                                    ("POST", "/v1/models/tiny:predict", FLAT)):
            response = await server.http.request(method, path, content=b'{"model": "tiny"}', headers=text_plain)
            assert_refused(response, 403, shape)
        # not this server's origin: another site, another local app (other port), opaque or non-web origins
        for origin in ("null", "file://", "http://evil.example:8000", "http://127.0.0.1:3000", "http://localhost",
                       "https://127.0.0.1", "http://127.0.0.1/path"):
            response = await server.http.put("/v1/clients/c/model", json={"model": "tiny"}, headers={"Origin": origin})
            assert_refused(response, 403)
        two = [("Origin", "http://127.0.0.1"), ("Origin", "http://evil.example")]
        assert_refused(await server.http.put("/v1/clients/c/model", json={"model": "tiny"}, headers=two), 403)
        assert all(s["client"] is None for s in (await server.http.get("/v1/slots", headers=evil)).json()["slots"])
        same_origin = await server.http.put("/v1/clients/c/model", json={"model": "tiny"},
                                            headers={"Origin": "http://127.0.0.1:80"})  # a page this server served
        assert same_origin.status_code == 200
        assert (await server.http.post("/v1/clients/c/predict", json=rows_body(refs["tiny"]))).status_code == 200


async def test_allowing_every_host_does_not_allow_other_sites_pages(settings: Settings) -> None:
    async with open_server(settings.model_copy(update={"allowed_hosts": ["*"]})) as server:
        headers = {"Host": "192.0.2.2:8000", "Origin": "https://evil.example", "Content-Type": "text/plain"}
        response = await server.http.put("/v1/clients/victim/model", content=b'{"model": "tiny"}', headers=headers)
        assert_refused(response, 403)
        own_page = {**headers, "Origin": "http://192.0.2.2:8000"}
        assert (await server.http.put("/v1/clients/c/model", content=b'{"model": "tiny"}',
                                      headers=own_page)).status_code == 200


async def test_duplicate_host_and_authorization_headers_are_refused(settings: Settings, keys: dict[str, str]) -> None:
    async with open_server(settings) as server:
        headers = [("Authorization", f"Bearer {keys['alice']}"), ("Authorization", f"Bearer {keys['ops']}")]
        assert_refused(await server.http.get("/v1/slots", headers=headers), 401)
    (Path(settings.state)).unlink()
    async with open_server(settings) as server:  # open mode: two Host headers are not a loopback Host
        assert_refused(await server.http.get("/v1/slots", headers=[("Host", "localhost"), ("Host", "evil.example")]),
                       403)


async def test_no_auth_never_switches_off_existing_keys(settings: Settings, keys: dict[str, str]) -> None:
    async with open_server(settings.model_copy(update={"no_auth": True})) as server:
        assert_refused(await server.http.delete("/v1/clients/alice/model"), 401)
        assert (await server.http.get("/v1/models", headers=bearer(keys["bob"]))).status_code == 200


async def test_a_key_added_while_serving_turns_authentication_on(settings: Settings) -> None:
    async with open_server(settings) as server:
        assert (await server.http.get("/v1/models")).status_code == 200
        store = SQLiteState(settings.state)
        key, _ = create_key(store, "alice")
        assert_refused(await server.http.get("/v1/models"), 401)
        assert (await server.http.get("/v1/models", headers=bearer(key))).status_code == 200
        store.revoke_keys("alice")  # revoking the last key never turns it off again
        store.close()
        assert_refused(await server.http.get("/v1/models"), 401)


async def test_explicit_allowed_hosts_apply_with_keys_too(settings: Settings, keys: dict[str, str]) -> None:
    async with open_server(settings.model_copy(update={"allowed_hosts": ["models.internal"]})) as server:
        good = {**bearer(keys["alice"]), "Host": "models.internal"}
        assert (await server.http.get("/v1/models", headers=good)).status_code == 200
        assert_refused(await server.http.get("/v1/models", headers={**good, "Host": "evil.example"}), 403)


async def test_an_admin_key_from_the_environment(settings: Settings) -> None:
    admin_key = "an-operator-chosen-key-of-forty-characters"
    async with open_server(settings.model_copy(update={"admin_key": SecretStr(admin_key)})) as server:
        assert_refused(await server.http.get("/v1/slots"), 401)
        ok = await server.http.put("/v1/clients/anyone/model", json={"model": "tiny"}, headers=bearer(admin_key))
        assert ok.status_code == 200
        assert (await server.http.get("/v1/clients/anyone", headers=bearer(admin_key))).json()["model"] == "tiny"

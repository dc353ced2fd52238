"""Request ids and log lines, in process: ``X-Request-Id`` echoed, generated or replaced; every line logged while a
request is handled (the access line, a load's line) carries its id; both formats render those records."""

import json
import logging
import re

import pytest

from app.logs import JsonFormatter, RequestIdFilter, TextFormatter
from app.settings import Settings
from tests.conftest import Server, open_server
from tests.models import Reference

pytestmark = pytest.mark.anyio

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record, with the request id each was logged under (as the server's handler sees them)."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(RequestIdFilter())
    return caplog


def access_lines(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.name == "slotserve.access"]


@pytest.mark.parametrize("sent", ["abc-123", "0f8e2c1a-5b3d-4e6f-9a7b-1c2d3e4f5a6b", "Root=1-67a:b/c+d_e.f",
                                  "x" * 128])
async def test_a_valid_client_id_is_echoed(server: Server, sent: str) -> None:
    for path in ("/healthz", "/no-such-route", "/v1/clients/-bad-/model"):
        assert (await server.http.get(path, headers={"X-Request-Id": sent})).headers["x-request-id"] == sent


async def test_a_request_without_an_id_gets_a_new_one_each_time(server: Server) -> None:
    ids = [(await server.http.get("/healthz")).headers["x-request-id"] for _ in range(3)]
    assert all(GENERATED.fullmatch(i) for i in ids) and len(set(ids)) == 3
    head = await server.http.head("/healthz")
    assert GENERATED.fullmatch(head.headers["x-request-id"]) and head.content == b""


@pytest.mark.parametrize("sent", ["", "has space", "x" * 129, 'quote"d', "semi;colon", "caf\u00e9".encode(), "a,b"])
async def test_an_unfit_client_id_is_replaced(server: Server, sent: str | bytes) -> None:
    response = await server.http.get("/healthz", headers={"X-Request-Id": sent})
    assert response.status_code == 200
    assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]
    assert GENERATED.fullmatch(response.headers["x-request-id"])


async def test_only_the_first_of_two_ids_counts(server: Server) -> None:
    response = await server.http.get("/healthz", headers=[("X-Request-Id", "first"), ("X-Request-Id", "second")])
    assert response.headers["x-request-id"] == "first"


async def test_lines_logged_for_a_request_carry_its_id(server: Server, logs: pytest.LogCaptureFixture) -> None:
    loaded = await server.http.put("/v1/clients/c/model", json={"model": "tiny"}, headers={"X-Request-Id": "load-7"})
    assert loaded.status_code == 200
    load_line = next(r for r in logs.records if r.name == "slotserve.registry" and r.getMessage().startswith("load "))
    assert load_line.request_id == "load-7"  # logged by the load's own task, started by the request
    access = access_lines(logs.records)[-1]
    assert access.request_id == "load-7"
    assert access.access["method"] == "PUT" and access.access["path"] == "/v1/clients/c/model"  # type: ignore
    assert access.access["status"] == 200 and access.access["duration_ms"] > 0  # type: ignore
    assert access.access["client"] == "127.0.0.1:123"  # type: ignore - httpx's ASGI transport's address

    missing = await server.http.get("/v1/clients/nobody", headers={"X-Request-Id": "miss-1"})
    assert missing.status_code == 404
    line = access_lines(logs.records)[-1]
    assert line.request_id == "miss-1" and line.access["status"] == 404  # type: ignore
    generated = (await server.http.get("/healthz")).headers["x-request-id"]
    assert access_lines(logs.records)[-1].request_id == generated
    logging.getLogger("slotserve.test").info("outside any request")
    assert logs.records[-1].request_id is None


async def test_both_formats_render_the_id_and_the_access_fields(server: Server,
                                                                logs: pytest.LogCaptureFixture) -> None:
    await server.http.get("/v1/slots?verbose=1", headers={"X-Request-Id": "fmt-1"})
    logging.getLogger("slotserve.test").warning("outside, with \"quotes\"\nand a newline")
    access, outside = access_lines(logs.records)[-1], logs.records[-1]

    entry = json.loads(JsonFormatter().format(access))
    assert entry["request_id"] == "fmt-1" and entry["logger"] == "slotserve.access" and entry["level"] == "INFO"
    assert {k: entry[k] for k in ("method", "path", "status")} == {"method": "GET", "path": "/v1/slots",
                                                                  "status": 200}  # the query is left out
    assert isinstance(entry["duration_ms"], float) and entry["client"] == "127.0.0.1:123"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])
    plain = JsonFormatter().format(outside)
    assert "\n" not in plain and json.loads(plain)["request_id"] is None
    assert json.loads(plain)["message"] == "outside, with \"quotes\"\nand a newline"

    text = TextFormatter().format(access)
    assert " INFO slotserve.access [fmt-1] 127.0.0.1:123 \"GET /v1/slots HTTP/1.1\" 200 " in text
    assert " WARNING slotserve.test [-] outside" in TextFormatter().format(outside)


async def test_the_access_line_can_be_turned_off(settings: Settings, refs: dict[str, Reference],
                                                 logs: pytest.LogCaptureFixture) -> None:
    async with open_server(settings.model_copy(update={"access_log": False})) as server:
        response = await server.http.get("/healthz", headers={"X-Request-Id": "quiet"})
        assert response.headers["x-request-id"] == "quiet"  # ids stay: they are the answer's too
    assert not access_lines(logs.records)


async def test_an_unexpected_500_still_echoes_the_id(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette's outermost layer answers a 500, outside the middleware that echoes ids: the handler does it."""
    import httpx

    from tests.conftest import BASE_URL

    async def broken() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.registry, "slot_records", broken)
    transport = httpx.ASGITransport(app=server.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        reply = await http.get("/v1/slots", headers={"X-Request-Id": "bug-report-7"})
    assert reply.status_code == 500 and reply.json()["error"]["code"] == "internal"
    assert reply.headers["x-request-id"] == "bug-report-7"

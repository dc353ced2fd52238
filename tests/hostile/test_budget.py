"""The request budget: memory in flight bounded in total and per client, 429 with Retry-After past it, and bodies
that trickle in refused with 408. Bodies here are streamed by the test and held open with events."""

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from app.settings import Settings
from tests.conftest import Server, open_server

pytestmark = pytest.mark.anyio

MIB = 1 << 20


def held_body(size: int, release: asyncio.Event) -> tuple[AsyncIterator[bytes], dict[str, str]]:
    """A load body of ``size`` bytes (white space, then the JSON) whose last byte comes once ``release`` is set."""
    text = json.dumps({"model": "tiny"}).encode().rjust(size)

    async def chunks() -> AsyncIterator[bytes]:
        yield text[:-1]
        await release.wait()
        yield text[-1:]

    return chunks(), {"Content-Length": str(len(text))}


@pytest.fixture
async def budget_server(settings: Settings) -> AsyncIterator[Server]:
    tight = settings.model_copy(update={"request_memory_mb": 4, "client_memory_share": 0.5,
                                        "max_client_requests": 2, "budget_wait_s": 0.2})
    async with open_server(tight) as server:
        yield server


async def until(predicate, what: str) -> None:
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {what}")


async def test_one_client_cannot_take_the_whole_budget(budget_server: Server) -> None:
    budget = budget_server.app.state.budget
    release = asyncio.Event()
    content, headers = held_body(int(0.9 * MIB), release)  # reading holds 0.9 MiB, parsing it 0.9 MiB more
    holding = asyncio.ensure_future(budget_server.http.put("/v1/clients/a/model", content=content, headers=headers))
    await until(lambda: budget.in_use("a") >= int(0.9 * MIB) - 1, "a's first body reserved (all but a byte)")
    # a's second request would take a past its 2 MiB share: it waits briefly, then 429 (native and V2 shapes)
    big = b" " * int(1.2 * MIB)
    refused = await budget_server.http.put("/v1/clients/a/model", content=big + b'{"model": "tiny"}')
    assert refused.status_code == 429, refused.text
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_requests"
    assert refused.headers["retry-after"] == "1"
    flat = await budget_server.http.post("/v2/repository/models/tiny/load", headers={"X-Client-Id": "a"},
                                         content=big + b"{}")
    assert flat.status_code == 429 and isinstance(flat.json()["error"], str) and flat.headers["retry-after"] == "1"
    # another client still fits the total: it is not starved by a
    other = await budget_server.http.put("/v1/clients/b/model", content=b" " * (MIB // 2) + b'{"model": "tiny"}')
    assert other.status_code == 200, other.text
    release.set()
    assert (await holding).status_code == 200
    assert budget.used == 0 and budget.refused == 2


async def test_requests_in_flight_per_client_are_capped(budget_server: Server) -> None:
    releases = [asyncio.Event(), asyncio.Event()]
    held = []
    for release in releases:
        content, headers = held_body(1000, release)
        held.append(asyncio.ensure_future(budget_server.http.put("/v1/clients/a/model", content=content,
                                                                 headers=headers)))
    budget = budget_server.app.state.budget
    await until(lambda: budget.in_use("a") >= 2 * 999, "two requests of a in flight")
    third = await budget_server.http.put("/v1/clients/a/model", json={"model": "tiny"})
    assert third.status_code == 429 and "requests in flight" in third.json()["error"]["message"]
    assert (await budget_server.http.put("/v1/clients/b/model", json={"model": "tiny"})).status_code == 200
    releases[0].set()
    assert (await held[0]).status_code == 200
    assert (await budget_server.http.put("/v1/clients/a/model", json={"model": "tiny"})).status_code == 200
    releases[1].set()
    await held[1]


async def test_a_request_larger_than_a_clients_share_is_413(budget_server: Server) -> None:
    response = await budget_server.http.put("/v1/clients/a/model", content=b" " * (3 * MIB) + b'{"model": "x"}')
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


async def test_a_declared_length_alone_reserves_nothing(budget_server: Server) -> None:
    never = asyncio.Event()

    async def nothing() -> AsyncIterator[bytes]:
        await never.wait()
        yield b""

    idle = [asyncio.ensure_future(budget_server.http.put(f"/v1/clients/idle{i}/model", content=nothing(),
                                                         headers={"Content-Length": str(2 * MIB)}))
            for i in range(8)]  # 16 MiB declared against a 4 MiB budget
    await until(lambda: budget_server.app.state.budget.requests == 8, "the idle requests arrived")
    assert budget_server.app.state.budget.used == 0
    assert (await budget_server.http.put("/v1/clients/busy/model", json={"model": "tiny"})).status_code == 200
    never.set()
    for request in idle:
        request.cancel()


async def test_a_trickling_body_is_408(settings: Settings) -> None:
    async with open_server(settings.model_copy(update={"body_timeout_s": 0.2})) as server:
        never = asyncio.Event()
        content, headers = held_body(1000, never)
        response = await server.http.put("/v1/clients/a/model", content=content, headers=headers)
        assert response.status_code == 408 and response.json()["error"]["code"] == "request_timeout"
        v2_content, _ = held_body(1000, never)
        flat = await server.http.post("/v2/repository/models/tiny/load", content=v2_content, headers=headers)
        assert flat.status_code == 408 and isinstance(flat.json()["error"], str)
        assert server.app.state.budget.used == 0

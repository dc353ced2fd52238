"""The /ui page in real headless Chromium against a real ``slotserve serve``: every slot rendered, API changes shown
live, loads, swaps and unloads by clicking, errors in words, nothing fetched from outside the app, and the
disconnected state when the server stops.

One server (3 slots of 4 MiB, the demo models plus a corrupt file) and one browser serve the whole module; each test
uses its own clients and tab (its own sessionStorage) and leaves every slot free. Every request each tab made is
checked to be the app's own.
"""

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.process import Running, run, serving
from tests.ui.browser import Tab, chromium, tab

SLOTS = 3
ENV = {"SLOTSERVE_SLOTS": str(SLOTS), "SLOTSERVE_SLOT_MEMORY_MB": "4"}  # medium (7 MiB) does not fit a slot
SHOWN_MS = 2000  # the bound for an API change to show up on the page without a reload


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("ui") / "models"
    assert run("demo-models", str(models)).returncode == 0
    (models / "broken.keras").write_bytes(b"this is not a zip archive, let alone a Keras model")
    return models


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[Running]:
    with serving("--model-dir", str(store), "--state", str(store.parent / "s.db"), "--no-access-log",
                 env=ENV, ready_path="/readyz") as running:
        yield running
    assert "Traceback" not in running.output, running.output[-3000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def api(server: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http
        for slot in http.get("/v1/slots").json()["slots"]:  # leave every slot free for the next test
            if slot["client"]:
                http.delete(f"/v1/clients/{slot['client']}/model")


@pytest.fixture
def ui(browser: Browser, server: Running) -> Iterator[Tab]:
    with tab(browser, server.url) as opened:
        opened.page.goto(f"{server.url}/ui")
        expect(opened.page.locator("#conn")).to_have_text("live")
        yield opened
        assert opened.foreign() == []


def card(page: Page, slot: int):
    return page.locator(f'[data-slot="{slot}"]')


def in_use(page: Page, slot: int) -> int:
    return int(card(page, slot).locator("[data-memory-in-use]").get_attribute("data-memory-in-use"))


def test_the_page_renders_every_slot_and_the_store(ui: Tab, api: httpx.Client) -> None:
    page = ui.page
    slots = api.get("/v1/slots").json()["slots"]
    assert len(slots) == SLOTS
    expect(page.locator("[data-slot]")).to_have_count(SLOTS)
    for slot in slots:
        shown = card(page, slot["slot"])
        expect(shown).to_contain_text(f"slot {slot['slot']}")
        expect(shown).to_contain_text(slot["device"])
        expect(shown).to_contain_text("free")
        assert in_use(page, slot["slot"]) == slot["memory"]["in_use_bytes"] == 0
        expect(shown.get_by_role("button", name=re.compile("Unload"))).to_be_hidden()
    models = api.get("/v1/models").json()["models"]
    rows = page.locator("#models tbody tr")
    expect(rows).to_have_count(len(models))
    for row, model in zip(rows.all(), models, strict=True):
        assert row.locator("td").all_inner_texts()[:2] == [model["name"], model["format"]]
    options = page.locator("#model option")
    assert [o.get_attribute("value") for o in options.all()] == [m["name"] for m in models]
    expect(page.locator("#who")).to_contain_text("open mode")


def test_a_load_through_the_api_shows_up_without_a_reload(ui: Tab, api: httpx.Client) -> None:
    page = ui.page
    loaded = api.put("/v1/clients/alice/model", json={"model": "mnist"}).json()
    shown = card(page, loaded["slot"])
    expect(shown).to_contain_text("alice", timeout=SHOWN_MS)
    expect(shown).to_contain_text("mnist")
    expect(shown).to_have_attribute("data-state", "ready")
    expect(shown.locator("[data-memory-in-use]")).to_have_attribute(
        "data-memory-in-use", str(api.get("/v1/clients/alice").json()["memory"]["in_use_bytes"]))
    assert in_use(page, loaded["slot"]) > 0
    # the slot's request count reaches the page too, and with it a rate
    for _ in range(6):
        assert api.post("/v1/clients/alice/predict", json={"instances": [[0.5] * 784]}).status_code == 200
    assert api.get("/v1/slots").json()["slots"][loaded["slot"]]["predictions_total"] >= 6
    rate = shown.locator(".rate")
    expect(rate).to_have_attribute("title", re.compile(r"^\d+ requests answered$"), timeout=SHOWN_MS)
    expect(rate).to_have_text(re.compile(r"^\d+(\.\d)? req/s$"), timeout=SHOWN_MS)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded


def test_a_swap_and_an_unload_by_clicking(ui: Tab, api: httpx.Client) -> None:
    page = ui.page
    slot = api.put("/v1/clients/bob/model", json={"model": "tiny"}).json()["slot"]
    expect(card(page, slot)).to_contain_text("tiny", timeout=SHOWN_MS)
    page.get_by_label("Client").fill("bob")
    page.locator("#model").select_option("iris")
    page.get_by_role("button", name="Load", exact=True).click()
    expect(page.locator("#status")).to_contain_text("bob: swapped tiny → iris")
    expect(card(page, slot)).to_contain_text("iris")
    expect(card(page, slot)).not_to_contain_text("tiny")
    record = api.get("/v1/clients/bob").json()
    assert (record["model"], record["slot"]) == ("iris", slot)  # swapped in place
    expect(card(page, slot).locator("[data-memory-in-use]")).to_have_attribute(
        "data-memory-in-use", str(record["memory"]["in_use_bytes"]))

    card(page, slot).get_by_role("button", name="Unload iris from bob").click()
    expect(card(page, slot)).to_contain_text("free")
    expect(card(page, slot)).not_to_contain_text("bob")
    expect(page.locator("#status")).to_contain_text("bob: unloaded iris")
    assert api.get("/v1/clients/bob").status_code == 404
    assert in_use(page, slot) == 0


def test_a_first_load_by_keyboard_alone(ui: Tab, api: httpx.Client) -> None:
    page = ui.page
    page.get_by_label("Client").focus()
    page.keyboard.type("kim")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "model"
    page.locator("#model").select_option("pair")  # the select keeps the focus
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "load"
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("kim: loaded pair into slot")
    slot = api.get("/v1/clients/kim").json()["slot"]
    expect(card(page, slot)).to_contain_text("kim")
    unload = card(page, slot).get_by_role("button", name="Unload pair from kim")
    unload.focus()
    page.keyboard.press("Enter")
    expect(card(page, slot)).to_contain_text("free")


@pytest.mark.parametrize("model,code", [("medium", "model_too_large"), ("broken", "model_invalid")])
def test_an_error_is_shown_in_words(ui: Tab, api: httpx.Client, model: str, code: str) -> None:
    page = ui.page
    refused = api.put("/v1/clients/probe/model", json={"model": model})
    assert refused.json()["error"]["code"] == code
    page.get_by_label("Client").fill("erin")
    page.locator("#model").select_option(model)
    page.get_by_role("button", name="Load", exact=True).click()
    error = page.get_by_role("alert")
    expect(error).to_be_visible()
    expect(error).to_contain_text(f"Could not load {model} for erin: {refused.json()['error']['message']}")
    expect(error).to_contain_text("It still serves no model.")
    expect(error).to_contain_text(f"({code})")
    assert all(s["client"] is None for s in api.get("/v1/slots").json()["slots"])


def test_the_page_fetches_only_from_the_app(ui: Tab, server: Running) -> None:
    page = ui.page
    # a few polls, then every request the page made: its own files and the API, nothing else
    for _ in range(100):
        if ui.requested.count(f"{server.url}/v1/slots") >= 3:
            break
        page.wait_for_timeout(100)  # lets Playwright dispatch the interceptions meanwhile
    paths = {url.removeprefix(server.url) for url in ui.requested}
    assets = {f"/ui/assets/{name}" for name in ("ui.js", "api.js", "slots.js", "ui.css")}
    assert paths == {"/ui", *assets, "/v1/whoami", "/v1/slots", "/v1/models"}, paths
    assert ui.requested.count(f"{server.url}/v1/slots") >= 3  # it polls
    # the browser itself is told not to reach anywhere else, whatever the page held
    response = httpx.get(f"{server.url}/ui")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "connect-src 'self'" in response.headers["content-security-policy"]
    assert "://" not in response.text


def test_the_page_says_disconnected_when_the_server_stops(browser: Browser, store: Path, tmp_path: Path) -> None:
    with serving("--model-dir", str(store), "--state", str(tmp_path / "s.db"), env=ENV) as own:
        with tab(browser, own.url) as opened:
            opened.page.goto(f"{own.url}/ui")
            expect(opened.page.locator("#conn")).to_have_text("live")
            own.proc.terminate()
            own.proc.wait(timeout=60)
            expect(opened.page.locator("#conn")).to_contain_text("disconnected", timeout=10_000)
            expect(opened.page.locator("body")).to_have_class(re.compile("stale"))
            assert opened.foreign() == []

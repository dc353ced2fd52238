"""The /ui page on a server with keys, in real headless Chromium: it asks for a key, keeps it in the tab's session
storage only, acts as the key's own client, and shows a tenant only what the API lets it see."""

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.process import Running, run, serving
from tests.ui.browser import Tab, chromium, tab

ENV = {"SLOTSERVE_SLOTS": "3", "SLOTSERVE_SLOT_MEMORY_MB": "4"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, dict[str, str]]]:
    root = tmp_path_factory.mktemp("ui-keys")
    models, state = root / "models", str(root / "s.db")
    assert run("demo-models", str(models)).returncode == 0
    keys = {}
    for client, admin in (("alice", False), ("bob", False), ("ops", True)):
        made = run("keys", "add", client, "--state", state, *(["--admin"] if admin else []))
        assert made.returncode == 0, made.stderr
        keys[client] = made.stdout.strip()
    with serving("--model-dir", str(models), "--state", state, "--no-access-log", env=ENV,
                 ready_path="/readyz") as running:
        yield running, keys


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def sign_in(opened: Tab, url: str, key: str) -> None:
    page = opened.page
    page.goto(f"{url}/ui")
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#key-why")).to_contain_text("needs an API key")
    page.get_by_label("Key").fill(key)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#conn")).to_have_text("live")


def test_a_tenant_acts_as_itself_and_sees_only_its_own_slot(browser: Browser,
                                                            keyed: tuple[Running, dict[str, str]]) -> None:
    server, keys = keyed
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {keys['bob']}"}) as bob:
        bobs = bob.put("/v1/clients/bob/model", json={"model": "iris"}).json()["slot"]
        for _ in range(3):
            assert bob.post("/v1/clients/bob/predict", json={"instances": [[1, 2, 3, 4]]}).status_code == 200
        with tab(browser, server.url) as opened:
            page = opened.page
            sign_in(opened, server.url, keys["alice"])
            expect(page.locator("#who")).to_contain_text("tenant key: client alice")
            expect(page.get_by_label("Client")).to_have_value("alice")
            expect(page.get_by_label("Client")).not_to_be_editable()
            # bob's slot: occupied, but neither bob, his model nor his activity is shown
            other = page.locator(f'[data-slot="{bobs}"]')
            expect(other).to_contain_text("held by another client")
            expect(other).to_have_attribute("data-state", "occupied")
            expect(other.locator(".rate")).to_have_text("activity hidden")
            expect(other.get_by_role("button")).to_be_hidden()
            shown = page.locator("#slots").inner_text()
            assert "bob" not in shown and "iris" not in shown

            page.locator("#model").select_option("tiny")
            page.get_by_role("button", name="Load", exact=True).click()
            expect(page.locator("#status")).to_contain_text("alice: loaded tiny")
            mine = page.locator('[data-slot]', has_text="alice")
            expect(mine).to_contain_text("tiny")
            expect(mine.get_by_role("button", name="Unload tiny from alice")).to_be_visible()
            # the key is in this tab's session storage, nowhere else
            assert page.evaluate("sessionStorage.getItem('slotserve.key')") == keys["alice"]
            assert page.evaluate("localStorage.length") == 0
            assert opened.context.cookies() == []
            mine.get_by_role("button", name="Unload tiny from alice").click()
            expect(mine).to_have_count(0)
            assert opened.foreign() == []
        bob.delete("/v1/clients/bob/model")

    with tab(browser, server.url) as fresh:  # another tab (context) does not have it: it asks again
        fresh.page.goto(f"{server.url}/ui")
        expect(fresh.page.locator("#key-form")).to_be_visible()


def test_a_refused_key_is_said_in_words_and_an_admin_types_the_client(browser: Browser,
                                                                       keyed: tuple[Running, dict[str, str]]) -> None:
    server, keys = keyed
    with tab(browser, server.url) as opened:
        page = opened.page
        page.goto(f"{server.url}/ui")
        page.get_by_label("Key").fill("ssk_not-a-key")
        page.get_by_role("button", name="Use key").click()
        expect(page.locator("#key-why")).to_have_text("The API key is not valid (unknown or revoked).")
        expect(page.locator("#conn")).to_have_text("API key needed")
        page.get_by_label("Key").fill(keys["ops"])
        page.get_by_role("button", name="Use key").click()
        expect(page.locator("#who")).to_contain_text("admin key (ops)")
        expect(page.get_by_label("Client")).to_be_editable()
        page.get_by_label("Client").fill("carol")
        page.locator("#model").select_option("pair")
        page.get_by_role("button", name="Load", exact=True).click()
        carol = page.locator("[data-slot]", has_text="carol")
        expect(carol).to_contain_text("pair")
        expect(carol.locator(".rate")).to_have_text(re.compile(r"req/s$"))
        carol.get_by_role("button", name="Unload pair from carol").click()
        expect(carol).to_have_count(0)
        page.get_by_role("button", name="Forget key").click()
        expect(page.locator("#key-form")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('slotserve.key')") is None
        assert opened.foreign() == []

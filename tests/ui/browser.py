"""Headless Chromium (Debian's ``chromium``) driven by Playwright for the /ui tests (never `playwright install`)."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium() -> Iterator[Browser]:
    """One headless Chromium for a module's tests; fails (not skips) without it: `make test` installs it."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: run `make test` (as root it installs it) or "
                    "`apt-get install -y chromium`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """A page in its own browser context (its own sessionStorage), with every URL it requested; requests to any
    other origin than ``origin`` are recorded and aborted."""

    page: Page
    context: BrowserContext
    origin: str
    requested: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        return [url for url in self.requested if not url.startswith(self.origin + "/")]


@contextmanager
def tab(browser: Browser, origin: str) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = Tab(context.new_page(), context, origin)

    def intercept(route: Route) -> None:
        url = route.request.url
        opened.requested.append(url)
        if url.startswith(origin + "/"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", intercept)
    try:
        yield opened
    finally:
        context.close()

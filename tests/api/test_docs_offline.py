"""/docs and /redoc work without internet: every URL the pages reference is served by the app itself.

The pages are parsed as a browser would read them (script src, link href, redoc's spec-url, Swagger UI's spec url),
every reference is fetched from the app, and none may point at another host. The server has an admin key, so
authentication is on: the pages and their assets still need none.
"""

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from app.api import create_app
from app.api.docs import ASSETS_DIR
from app.settings import Settings
from tests.conftest import Server, open_server

pytestmark = pytest.mark.anyio

ADMIN_KEY = "docs-test-admin-key-" + "d" * 32
EXPECTED_TYPE = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


class References(HTMLParser):
    """Every URL a page makes the browser load: src, href and spec-url attributes, and Swagger UI's ``url: '...'``."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.urls += re.findall(r"\burl:\s*'([^']*)'", data)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Server]:
    keyed = settings.model_copy(update={"admin_key": SecretStr(ADMIN_KEY)})
    async with open_server(keyed) as opened:
        yield opened


@pytest.mark.parametrize("page,expected", [
    ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "openapi.json"}),
    ("/redoc", {"redoc.standalone.js", "favicon-32x32.png", "openapi.json"}),
])
async def test_every_reference_of_the_page_is_served_by_the_app(server: Server, page: str, expected: set[str]) -> None:
    assert (await server.http.get("/v1/models")).status_code == 401  # authentication is on
    response = await server.http.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = references(html)
    assert {url.rsplit("/", 1)[-1] for url in urls} == expected, urls
    # nothing outside the app: no scheme, no protocol-relative host, no Google fonts anywhere in the page
    assert "://" not in html and "fonts.googleapis" not in html and "cdn." not in html
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        fetched = await server.http.get(url)
        assert fetched.status_code == 200, (url, fetched.text[:200])
        kind = Path(url).suffix
        assert fetched.headers["content-type"].startswith(EXPECTED_TYPE[kind]), (url, fetched.headers)
        if kind == ".js":  # the real bundle, and the licence its first line points to, next to it
            assert fetched.content.startswith(b"/*! For license information please see ")
            assert len(fetched.content) > 500_000
            assert (await server.http.get(url + ".LICENSE.txt")).status_code == 200
        if kind == ".json":
            assert fetched.json()["openapi"].startswith("3.")


async def test_swagger_ui_sends_nothing_to_the_online_validator(server: Server) -> None:
    html = (await server.http.get("/docs")).text
    assert '"validatorUrl": null' in html


async def test_the_assets_are_outside_the_openapi_and_answer_like_every_route(server: Server) -> None:
    paths = (await server.http.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]
    missing = await server.http.get("/docs/assets/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    for escape in ("/docs/assets/..%2Fdocs.py", "/docs/assets/%2e%2e%2f%2e%2e%2fsettings.py"):
        assert (await server.http.get(escape)).status_code == 404
    posted = await server.http.post("/docs/assets/swagger-ui.css")
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"
    head = await server.http.head("/docs/assets/swagger-ui.css")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 100_000


async def test_every_vendored_asset_has_its_licence_next_to_it() -> None:
    names = {path.name for path in ASSETS_DIR.iterdir()}
    assert {"LICENSE.swagger-ui", "NOTICE.swagger-ui", "LICENSE.redoc", "SOURCES.md"} <= names
    for bundle in ("swagger-ui-bundle.js", "redoc.standalone.js"):
        assert f"{bundle}.LICENSE.txt" in names


async def test_behind_a_proxy_prefix_every_reference_carries_it(settings: Settings) -> None:
    app = create_app(settings)  # pages and assets need no lifespan: nothing of the registry is touched
    transport = httpx.ASGITransport(app=app, root_path="/slotserve")
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        for page in ("/docs", "/redoc"):
            urls = references((await http.get(page)).text)
            assert urls and all(url.startswith("/slotserve/") for url in urls), urls

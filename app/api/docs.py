"""/docs (Swagger UI) and /redoc served with their scripts, styles and icon from the package, never from a CDN.

FastAPI's own docs pages load swagger-ui and redoc from jsDelivr and fonts from Google: on an air-gapped GPU host
they are blank pages, while every 404/405 message points users to /docs. These pages are FastAPI's (the same HTML
generators) with every URL pointing into this app; the files and their licences are in ``docs_assets/``
(``SOURCES.md`` there says where each comes from). Neither the pages nor the assets are in the OpenAPI, and none
needs a key.
"""

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from app.errors import NotFound

ASSETS_DIR = Path(__file__).parent / "docs_assets"
ASSETS_URL = "/docs/assets"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
# Swagger UI's default validator is a third-party service the browser would be sent the spec's URL to
SWAGGER_PARAMETERS = {"validatorUrl": None}
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png"}
TEXT = "text/plain; charset=utf-8"  # the licences, the notice and SOURCES.md
CACHE = {"Cache-Control": "public, max-age=3600"}  # names are not versioned: an upgrade shows within the hour


def install_docs(app: FastAPI) -> None:
    """Add /docs, /redoc and the assets they load to an app created with ``docs_url=None, redoc_url=None``."""
    if app.docs_url or app.redoc_url:
        raise ValueError("create the app with docs_url=None and redoc_url=None: install_docs serves them")
    # name -> (file, media type): the folder's files only, listed once, so no request path reaches another file
    assets = {path.name: (path, MEDIA_TYPES.get(path.suffix, TEXT)) for path in ASSETS_DIR.iterdir() if path.is_file()}

    # a route, not a StaticFiles mount: its 404 and 405 (with Allow) are the app's own, like every other path's
    @app.get(ASSETS_URL + "/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in assets:
            raise NotFound("There is no such docs asset; see /docs for the API.")
        path, media_type = assets[name]
        return FileResponse(path, media_type=media_type, headers=CACHE)

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or ""), title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon-32x32.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS)

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + (app.openapi_url or ""), title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon-32x32.png", with_google_fonts=False)


def _root(request: Request) -> str:
    """The path prefix a reverse proxy mounts the app under (``--root-path``), as FastAPI's own pages use it."""
    return str(request.scope.get("root_path", "")).rstrip("/")

"""/ui: the live slots page, plain HTML, JS and CSS from the package (``ui_assets/``), no CDN and no build step.

The page is static: everything it shows comes from the same JSON API any client uses (``/v1/whoami``, ``/v1/slots``,
``/v1/models``) with the key the user types into it, so it needs no key to be fetched and adds no second data path.
Its URLs are relative, so it works under a reverse proxy's ``--root-path`` too. A Content-Security-Policy keeps the
browser from loading or sending anything outside this origin, whatever a model or client name holds. Neither the page
nor its assets are in the OpenAPI.
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.errors import NotFound

ASSETS_DIR = Path(__file__).resolve().parent.parent / "ui_assets"
PAGE = "index.html"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}  # revalidated on each visit: an upgrade shows at once (ETag keeps it cheap)

router = APIRouter(include_in_schema=False)
# name -> (file, media type): the folder's files only, listed once, so no request path reaches another file
_assets = {p.name: (p, MEDIA_TYPES[p.suffix]) for p in ASSETS_DIR.iterdir() if p.suffix in MEDIA_TYPES}


@router.get("/ui")
async def page() -> FileResponse:
    path, media_type = _assets[PAGE]
    return FileResponse(path, media_type=media_type, headers=HEADERS)


# a route, not a StaticFiles mount: its 404 and 405 (with Allow) are the app's own, like every other path's
@router.get("/ui/assets/{name}")
async def asset(name: str) -> FileResponse:
    if name not in _assets or name == PAGE:
        raise NotFound("There is no such asset of the /ui page.")
    path, media_type = _assets[name]
    return FileResponse(path, media_type=media_type, headers=HEADERS)

"""Every failure -> ``{"error": {"code", "message"}}`` with its documented status. Nothing else becomes a 5xx."""

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import errors
from app.api.flat_errors import flat_error
from app.api.responses import FastJSONResponse, describe_validation
from app.api.schemas import ErrorBody
from app.logs import REQUEST_ID

log = logging.getLogger("slotserve.api")
_FLAT_PATHS = re.compile(r"^/(v2(/|$)|v1/models/)")  # V2, and TF Serving's /v1/models/{name}...


def install_error_handlers(app: FastAPI) -> None:
    """Register the one rendering of errors for every route of ``app``."""
    app.add_exception_handler(errors.SlotServeError, _slotserve_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def render(err: errors.SlotServeError) -> FastJSONResponse:
    return FastJSONResponse(err.to_dict(), status_code=err.status, headers=err.headers())


async def _slotserve_error(_: Request, exc: Exception) -> FastJSONResponse:
    assert isinstance(exc, errors.SlotServeError)
    return render(exc)


async def _validation_error(_: Request, exc: Exception) -> FastJSONResponse:
    assert isinstance(exc, RequestValidationError)
    return render(errors.InvalidRequest(describe_validation(exc.errors())))


async def _http_error(request: Request, exc: Exception) -> FastJSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers: dict[str, str] = {}
    if exc.status_code == 404:
        err: errors.SlotServeError = errors.NotFound("There is no such route; see /docs for the API.")
    elif exc.status_code == 405:
        headers["Allow"] = request.app.state.methods.allowed(request.url.path)
        err = errors.MethodNotAllowed(f"This route accepts {headers['Allow']}; see /docs for the API.")
    else:
        body = {"error": {"code": f"http_{exc.status_code}", "message": str(exc.detail)}}
        return FastJSONResponse(body, status_code=exc.status_code)
    response = render_for(request.url.path, err)
    response.headers.update(headers)
    return response


def render_for(path: str, err: errors.SlotServeError) -> FastJSONResponse:
    """``err`` in the shape the path's clients read: flat under the protocols' prefixes, native elsewhere (for
    answers made outside any route: unknown paths, 405s, requests cancelled at shutdown)."""
    return flat_error(err, err.status) if _FLAT_PATHS.match(path) else render(err)


async def _unexpected_error(request: Request, exc: Exception) -> FastJSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    response = render(errors.SlotServeError("The server failed unexpectedly; the error has been logged."))
    # answered by Starlette's outermost layer, outside the middleware that echoes the id: echo it here, so the id
    # a user reports finds the logged traceback
    if (request_id := REQUEST_ID.get()) is not None:
        response.headers["X-Request-Id"] = request_id
    return response


def error_responses(*kinds: type[errors.SlotServeError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting each error a route can return, grouped by status."""
    by_status: dict[int, list[str]] = {}
    for kind in (errors.InvalidRequest, *kinds):
        by_status.setdefault(int(kind.status), []).append(kind.code)
    return {
        status: {"model": ErrorBody, "description": "Error codes: " + ", ".join(sorted(set(codes)))}
        for status, codes in sorted(by_status.items())
    }

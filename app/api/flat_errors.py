"""The protocols' flat error shape, ``{"error": "<message>"}``, for routers whose clients expect it (V2, TF Serving).

Each such router declares its route class with ``flat_error_route(status_of)``: every failure of its endpoints,
request validation and unexpected errors included, is rendered flat with the protocol's own status, while the
native API keeps its ``{"error": {"code", "message"}}`` shape.
"""

import logging
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from app import errors
from app.api.responses import FastJSONResponse, describe_validation

log = logging.getLogger("slotserve.api")

StatusOf = Callable[[errors.SlotServeError], int]


def flat_error(err: errors.SlotServeError, status: int) -> FastJSONResponse:
    """``{"error": message}`` with ``status`` and the error's headers (Retry-After, WWW-Authenticate)."""
    return FastJSONResponse({"error": err.message}, status_code=status, headers=err.headers())


def flat_error_route(status_of: StatusOf) -> type[APIRoute]:
    """An ``APIRoute`` class rendering every failure flat, with the status ``status_of`` gives each error."""

    class FlatErrorRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except errors.SlotServeError as exc:
                    failure = exc
                except RequestValidationError as exc:
                    failure = errors.InvalidRequest(describe_validation(exc.errors()))
                except Exception as exc:  # these clients can only read {"error": "..."}, even for a 500
                    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
                    failure = errors.SlotServeError("The server failed unexpectedly; the error has been logged.")
                return flat_error(failure, status_of(failure))

            return handle

    return FlatErrorRoute

"""HTTP method semantics FastAPI leaves out: HEAD answers as GET without a body, and 405 says what is allowed; and
what every request needs around it: its id, its access line, its metrics.

FastAPI routes declare GET only, and its 405 names the methods of the first route that matched the path, while
several routes may share it (PUT and DELETE on a client's model). ``HttpSemantics`` runs a HEAD request as GET and
drops the body (and ends requests cancelled at shutdown cleanly); ``MethodTable`` lists every method any route
accepts on a path, HEAD included with GET. The request id, the access line and the request metrics live in the same
middleware on purpose: one layer per request (issue 9 measured each layer's cost).
"""

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import render_for
from app.api.metrics import Metrics
from app.errors import ServerStopping
from app.logs import REQUEST_ID, REQUEST_ID_HEADER, log_access, request_id_of

log = logging.getLogger("slotserve.api")


class HttpSemantics:
    """ASGI middleware for what FastAPI leaves out and what every request needs (one layer, for every request):

    - HEAD runs as GET, keeping the status and headers but not the body;
    - a request uvicorn cancels past the shutdown bound ends cleanly, answered ``503 server_stopping`` if nothing
      was sent yet, instead of surfacing as an "Exception in ASGI application";
    - the request's id (the client's valid ``X-Request-Id``, else a new one) is set for the logs and echoed in the
      answer's ``X-Request-Id``; at the end the request is counted in ``metrics`` and, with ``access_log``, logged.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        request_id = request_id_of(scope["headers"])
        token = REQUEST_ID.set(request_id.decode("ascii"))
        head = scope["method"] == "HEAD"
        status = 0  # until the answer starts

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)]}
            elif head:
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app({**scope, "method": "GET"} if head else scope, receive, tracked)
        except asyncio.CancelledError:
            log.info("cancelled at shutdown: %s %s", scope["method"], scope["path"])
            if not status:
                with contextlib.suppress(Exception):
                    response = render_for(scope["path"], ServerStopping(
                        "The server is shutting down; retry (on another replica, if there is one)."))
                    await response(scope, receive, tracked)
        except Exception:
            # answered 500 by Starlette's outermost layer, which logs it: the id stays set for that line (the
            # request's task and its context end with it)
            self._done(scope, status or 500, arrived)
            raise
        self._done(scope, status or 500, arrived)
        REQUEST_ID.reset(token)

    def _done(self, scope: Scope, status: int, arrived: float) -> None:
        seconds = time.perf_counter() - arrived
        if self.metrics is not None:
            self.metrics.request(scope["path"], status, seconds)
        if self.access_log:
            log_access(scope, status, seconds)


class MethodTable:
    """Every route's path pattern and methods, from the routers as declared (FastAPI wraps included routers, so
    the app's own route list no longer says which methods a path takes)."""

    def __init__(self, routers: list[Any]) -> None:
        self._routes: list[tuple[re.Pattern[str], set[str]]] = []
        for router in routers:
            for route in router.routes:
                if getattr(route, "methods", None):
                    # a path parameter here never holds ':', so /v1/models/{name} does not claim {name}:predict
                    pattern = re.sub(r"\{[^}]+\}", "[^/:]+", route.path)
                    self._routes.append((re.compile(f"^{pattern}$"), set(route.methods)))

    def allowed(self, path: str) -> str:
        """Every method some route accepts on ``path`` (GET implying HEAD), for the ``Allow`` header."""
        methods: set[str] = set()
        for pattern, accepted in self._routes:
            if pattern.match(path):
                methods |= accepted
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))

"""HTTP method semantics FastAPI leaves out: HEAD answers as GET without a body, and 405 says what is allowed.

FastAPI routes declare GET only, and its 405 names the methods of the first route that matched the path, while
several routes may share it (PUT and DELETE on a client's model). ``HttpSemantics`` runs a HEAD request as GET and
drops the body (and ends requests cancelled at shutdown cleanly); ``MethodTable`` lists every method any route
accepts on a path, HEAD included with GET.
"""

import asyncio
import contextlib
import logging
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import render_for
from app.errors import ServerStopping

log = logging.getLogger("slotserve.api")


class HttpSemantics:
    """ASGI middleware for what FastAPI leaves out (one layer, for every request):

    - HEAD runs as GET, keeping the status and headers but not the body;
    - a request uvicorn cancels past the shutdown bound ends cleanly, answered ``503 server_stopping`` if nothing
      was sent yet, instead of surfacing as an "Exception in ASGI application".
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            elif head:
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app({**scope, "method": "GET"} if head else scope, receive, tracked)
        except asyncio.CancelledError:
            log.info("cancelled at shutdown: %s %s", scope["method"], scope["path"])
            if not started:
                with contextlib.suppress(Exception):
                    response = render_for(scope["path"], ServerStopping(
                        "The server is shutting down; retry (on another replica, if there is one)."))
                    await response(scope, receive, send)


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

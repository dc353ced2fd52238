"""Running the app under uvicorn with bounds on slow peers: a header timeout, a body timeout (in ``payload``) and a
graceful-shutdown bound. Nothing here imports TensorFlow.

uvicorn has no timeout for a request's headers: a client that trickles them holds its connection for as long as it
likes. ``HeaderTimeoutProtocol`` closes a connection whose request headers have not all arrived within
``header_timeout_s`` of its first byte (or of the connection, for the first request); idle keep-alive connections
stay uvicorn's own ``timeout_keep_alive``.
"""

import asyncio
import logging
import os
import signal
import socket
import threading
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import Settings

log = logging.getLogger("slotserve.server")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request headers arrive too slowly.

    Each connection notes when its current request's headers began (its first byte; the connection's start for
    the first request) and forgets it when they are complete; one sweep a second closes the laggards. No timer is
    armed per request: this runs on every request.
    """

    header_timeout_s = 10.0
    _sweeps: "dict[asyncio.AbstractEventLoop, asyncio.Task]" = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._headers_since = self.loop.time()
        if self.loop not in self._sweeps:
            self._sweeps[self.loop] = self.loop.create_task(self._sweep(self.connections))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._headers_since is None:
            self._headers_since = self.loop.time()

    def on_headers_complete(self) -> None:
        self._headers_since = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # answered before its body was all read (GET /healthz with a Content-Length of a gigabyte, trickled): the
        # connection would keep reading, and every byte would restart keep-alive. Close it instead.
        unread = self.cycle is not None and self.cycle.more_body
        super().on_response_complete()
        if unread and not self.transport.is_closing():
            self.transport.close()

    async def _sweep(self, connections: set) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.header_timeout_s / 2))
            now = self.loop.time()
            for connection in list(connections):
                since = getattr(connection, "_headers_since", None)
                if since is not None and now - since > self.header_timeout_s and not connection.transport.is_closing():
                    log.debug("closing a connection whose request headers took over %gs", self.header_timeout_s)
                    connection.transport.close()


def _stopped(signum: int, _: Any) -> None:
    log.info("stopped by signal %d after a graceful shutdown", signum)


def run(app: Any, settings: Settings, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM or SIGINT; in-flight requests get ``shutdown_timeout_s`` to finish,
    then are cancelled, then the app's lifespan frees the slots."""
    protocol = type("SlotServeProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": settings.header_timeout_s})
    # log_config=None: uvicorn's own lines go through the one handler serve set up (app/logs.py), and the access
    # line is the app's (it has the request id and the duration), so uvicorn's is off
    config = uvicorn.Config(app, http=protocol, log_level=settings.log_level.lower(), log_config=None,
                            access_log=False, timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)),
                            timeout_keep_alive=settings.keep_alive_s)
    # uvicorn re-raises the signal that stopped it once it has shut down, through the handler it found installed:
    # with Python's defaults a clean SIGTERM shutdown would end in "killed by SIGTERM" (143), not 0
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _stopped)
    uvicorn.Server(config).run(sockets=[sock])
    stuck = [t.name for t in threading.enumerate() if t.name.startswith(("slot", "decode")) and t.is_alive()]
    if stuck:
        # a load (or a body's decoding) cannot be interrupted, and Python would wait for it at exit: leave without
        # it rather than outlive the shutdown bound (what must be durable already is)
        log.warning("exiting while %s still run; their work is abandoned", ", ".join(stuck))
        logging.shutdown()
        os._exit(0)

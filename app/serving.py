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
    """uvicorn's httptools protocol, closing connections whose request headers arrive too slowly."""

    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        # answered before its body was all read (GET /healthz with a Content-Length of a gigabyte, trickled): the
        # connection would keep reading, and every byte would restart keep-alive. Close it instead.
        unread = self.cycle is not None and self.cycle.more_body
        super().on_response_complete()
        if unread and not self.transport.is_closing():
            self.transport.close()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.debug("closing a connection whose request headers took over %gs", self.header_timeout_s)
            self.transport.close()


def _stopped(signum: int, _: Any) -> None:
    log.info("stopped by signal %d after a graceful shutdown", signum)


def run(app: Any, settings: Settings, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM or SIGINT; in-flight requests get ``shutdown_timeout_s`` to finish,
    then are cancelled, then the app's lifespan frees the slots."""
    protocol = type("SlotServeProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": settings.header_timeout_s})
    config = uvicorn.Config(app, http=protocol, log_level=settings.log_level.lower(),
                            timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s)))
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

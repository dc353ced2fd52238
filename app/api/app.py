"""The FastAPI app factory: settings in, app out; the lifespan builds and tears down the registry and the state."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from app import __version__
from app.api.access import AccessPolicy, startup_notice, startup_refusal
from app.api.budget import RequestBudget
from app.api.docs import install_docs
from app.api.errors import install_error_handlers
from app.api.http_methods import HttpSemantics, MethodTable
from app.api.metrics import Metrics
from app.api.openapi import with_bearer_scheme
from app.api.responses import FastJSONResponse
from app.api.routes import health, metrics, native, tfserving, ui, v2
from app.errors import StateError
from app.registry import Registry
from app.settings import Settings
from app.state import KeyRing, StateStore, open_state

log = logging.getLogger("slotserve.api")

DESCRIPTION = """
One process, many clients' Keras models, each in its own fixed-size memory slot. A client's first load claims a
free slot; later loads swap its model in place; unloading gives the slot back with its memory freed.

**Authentication.** When the server has API keys (`slotserve keys add CLIENT`), every route but the health checks
and these docs needs `Authorization: Bearer <key>` (the Authorize button above). A key is one client: it acts on
its own client only, unless it is an admin key. Without keys the server answers loopback requests only.

Every native error is `{"error": {"code": "...", "message": "..."}}`; the codes are listed under each route. The
V2 and TF Serving routes answer `{"error": "..."}` as those protocols do.
"""
KEY_FLUSH_S = 30.0  # how often keys' last uses are written to the state
CLOSE_TIMEOUT_S = 5.0  # at shutdown, after requests: how long freeing the slots may wait for a load in progress


@dataclass
class ServerStats:
    """Counters of what happens to requests outside any route's answer."""

    client_disconnects: int = 0  # clients gone before their body arrived


def _report_restore(task: asyncio.Task) -> None:
    """A restore that stopped short (the state store away, a bug) says so; the server still serves, and a client
    whose assignment was not put back is taken over by its first request (with a shared state) or loaded again."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the restore of remembered clients stopped: %s", task.exception())


def create_app(settings: Settings, registry: Registry | None = None, state: StateStore | None = None) -> FastAPI:
    """Build the app. Without ``registry``, the lifespan plans the slots and builds one from ``settings``; without
    ``state``, it opens ``settings.state``. Whatever the lifespan opens, it closes."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = state or open_state(settings.state)
        refusal = startup_refusal(settings, store)
        if refusal:
            if state is None:
                store.close()
            raise StateError(refusal)
        keys = KeyRing(store, settings.admin_key.get_secret_value() if settings.admin_key else None)
        app.state.access = policy = AccessPolicy(settings, keys)
        if notice := startup_notice(settings, policy):
            log.warning(notice)
        flusher = asyncio.get_running_loop().create_task(_flush_now_and_then(keys))
        try:
            owned = registry or await asyncio.to_thread(Registry.from_settings, settings, store)
            remembered = owned.memory.state
            if settings.forget and remembered is not None:  # in a shared store, only this replica's
                forgotten = await asyncio.to_thread(remembered.clear_assignments,
                                                    settings.replica_id if remembered.shared else None)
                log.warning("--forget: %d remembered assignment(s) forgotten; starting empty", forgotten)
            app.state.registry = owned
            owned.events.listener = app.state.metrics  # loads (restores too) and batches, from now on
            # the server answers at once (/healthz); it is ready (/readyz) once every remembered client is back
            app.state.restoring = asyncio.get_running_loop().create_task(owned.restore())
            app.state.restoring.add_done_callback(_report_restore)
            # with a shared store, drop the clients other replicas took over (registry/ownership.py)
            checking = asyncio.get_running_loop().create_task(owned.keep_ownership()) if owned.memory.shared else None
            try:
                yield
            finally:
                app.state.restoring.cancel()
                if checking is not None:
                    checking.cancel()
                app.state.registry = None
                await owned.close(min(CLOSE_TIMEOUT_S, settings.shutdown_timeout_s))
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await asyncio.to_thread(keys.flush)
            if state is None:
                await asyncio.to_thread(store.close)

    app = FastAPI(title="slotserve", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  default_response_class=FastJSONResponse, docs_url=None, redoc_url=None)
    app.state.registry = None
    app.state.restoring = None
    app.state.access = None
    app.state.settings = settings
    app.state.stats = ServerStats()
    app.state.metrics = Metrics()  # this app's own (tests build many apps in one process)
    app.state.budget = RequestBudget(settings.request_memory_bytes,
                                     int(settings.request_memory_bytes * settings.client_memory_share),
                                     settings.max_client_requests, settings.budget_wait_s)
    install_error_handlers(app)
    install_docs(app)  # /docs and /redoc with their assets served from the package, not a CDN
    app.add_middleware(HttpSemantics, metrics=app.state.metrics, access_log=settings.access_log)
    routers = [health.router, native.router, v2.health_router, v2.router, tfserving.router, metrics.router,
               ui.router]  # ui: the /ui page, static files over the same API
    for router in routers:
        app.include_router(router)
    app.state.methods = MethodTable([app.router, *routers])
    public = {route.path for router in (health.router, v2.health_router) for route in router.routes}
    app.openapi = with_bearer_scheme(app, public)  # type: ignore[method-assign]
    return app


async def _flush_now_and_then(keys: KeyRing) -> None:
    while True:
        await asyncio.sleep(KEY_FLUSH_S)
        try:
            await asyncio.to_thread(keys.flush)
        except Exception:  # noqa: BLE001 - a busy or read-only state file must not stop the server
            log.warning("could not record API keys' last use", exc_info=True)

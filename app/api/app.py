"""The FastAPI app factory: settings in, app out; the lifespan builds and tears down the registry."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.api.errors import install_error_handlers
from app.api.responses import FastJSONResponse
from app.api.routes import health, native, tfserving, v2
from app.registry import Registry
from app.settings import Settings

DESCRIPTION = """
One process, many clients' Keras models, each in its own fixed-size memory slot. A client's first load claims a
free slot; later loads swap its model in place; unloading gives the slot back with its memory freed.

Every error is `{"error": {"code": "...", "message": "..."}}`; the codes are listed under each route.
"""


def create_app(settings: Settings, registry: Registry | None = None) -> FastAPI:
    """Build the app. Without ``registry``, the lifespan plans the slots and builds one from ``settings``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = registry or await asyncio.to_thread(Registry.from_settings, settings)
        app.state.registry = owned
        try:
            yield
        finally:
            app.state.registry = None
            await owned.close()

    app = FastAPI(title="slotserve", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  default_response_class=FastJSONResponse)
    app.state.registry = None
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(native.router)
    app.include_router(v2.router)
    app.include_router(tfserving.router)
    return app

"""The OpenAPI document, with the API-key scheme declared on every route that needs a key (/docs' Authorize)."""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

SCHEME = "APIKey"


def with_bearer_scheme(app: FastAPI, public_paths: set[str]) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` that declares ``Authorization: Bearer <key>`` on every operation outside ``public_paths``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
                "type": "http", "scheme": "bearer", "description": "An API key from `slotserve keys add CLIENT`."}
            for path, operations in schema.get("paths", {}).items():
                if path not in public_paths:
                    for operation in operations.values():
                        operation["security"] = [{SCHEME: []}]
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi

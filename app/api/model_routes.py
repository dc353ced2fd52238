"""Registering one handler at both ``.../{name}{suffix}`` and ``.../{name}/versions/{version}{suffix}``.

The V2 and TF Serving routers both address a model with an optional version; their handlers take
``(request, registry, client, name, version or None)`` and this builds the two FastAPI endpoints around them.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.convertors import Convertor, register_url_convertor

from app.api.deps import ClientIdDep, RegistryDep
from app.registry import Registry


class _SegmentWithoutColon(Convertor[str]):
    """A path segment without ':': TF Serving's ``/v1/models/{name}:predict`` verbs then never route to the
    ``/v1/models/{name}`` GET routes, so a GET on a verb URL is 405, not a 400 about the model name."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("model", _SegmentWithoutColon())

Handler = Callable[[Request, Registry, str, str, str | None], Awaitable[Any]]


def model_route(router: APIRouter, name_type: Any, version_type: Any, prefix: str, method: str, suffix: str,
                **kwargs: Any) -> Callable[[Handler], Handler]:
    """A decorator registering ``handler`` at ``{prefix}/{name}{suffix}`` and its ``/versions/{version}`` twin;
    ``name_type`` and ``version_type`` are the ``Annotated`` path parameter types (patterns, docs)."""

    def register(handler: Handler) -> Handler:
        async def latest(request: Request, name: name_type, client: ClientIdDep, registry: RegistryDep) -> Any:
            return await handler(request, registry, client, name, None)

        async def versioned(request: Request, name: name_type, version: version_type, client: ClientIdDep,
                            registry: RegistryDep) -> Any:
            return await handler(request, registry, client, name, version)

        for path, endpoint, tag in ((f"{prefix}/{{name:model}}{suffix}", latest, ""),
                                    (f"{prefix}/{{name:model}}/versions/{{version:model}}{suffix}", versioned,
                                     "_versioned")):
            router.add_api_route(path, endpoint, methods=[method], response_model=None,
                                 name=f"{router.prefix.strip('/').replace('/', '_')}_{handler.__name__}{tag}",
                                 **kwargs)
        return handler

    return register

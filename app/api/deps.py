"""Typed dependencies shared by every router."""

from typing import Annotated

from fastapi import Depends, Header, Request

from app.errors import InvalidRequest, SlotBusy
from app.names import is_valid_name
from app.registry import Registry


async def get_registry(request: Request) -> Registry:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise SlotBusy("The server is still starting; try again shortly.")
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]

DEFAULT_CLIENT = "default"


async def get_client_id(
    x_client_id: Annotated[str | None, Header(description="Calling client's id (default: 'default').")] = None,
) -> str:
    """The calling client on the protocol routes (V2, TF Serving): the ``X-Client-Id`` header, else "default".

    The API keys on the roadmap will replace the header; routes depend on this function only.
    """
    if x_client_id is None:
        return DEFAULT_CLIENT
    if not is_valid_name(x_client_id):
        raise InvalidRequest(f"X-Client-Id '{x_client_id}' is not a valid client name.")
    return x_client_id


ClientIdDep = Annotated[str, Depends(get_client_id)]

"""Typed dependencies shared by every router."""

from typing import Annotated

from fastapi import Depends, Request

from app.errors import SlotBusy
from app.registry import Registry


async def get_registry(request: Request) -> Registry:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise SlotBusy("The server is still starting; try again shortly.")
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]

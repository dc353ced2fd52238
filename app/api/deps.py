"""Typed dependencies shared by every router."""

from typing import Annotated

from fastapi import Depends, Request

from app.errors import SlotBusy
from app.registry import Registry


def get_registry(request: Request) -> Registry:
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise SlotBusy("The server is still starting; try again shortly.")
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]

"""Typed dependencies shared by every router: the registry, the caller, and the client a request acts for."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.access import AccessPolicy, Caller, RequestHeaders
from app.api.schemas import ClientName
from app.errors import Forbidden, InvalidRequest, SlotBusy
from app.names import is_valid_name
from app.registry import Registry


async def get_registry(request: Request) -> Registry:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise SlotBusy("The server is still starting; try again shortly.")
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]

# Declared for /docs (its Authorize button); the key itself is read by the access policy, which also refuses
# duplicate headers and answers 401 in each protocol's shape.
_bearer = HTTPBearer(auto_error=False, description="An API key from `slotserve keys add CLIENT`.")


async def get_caller(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    """Who is calling: the key's client (401 without a valid key), or anyone on loopback in open mode."""
    policy: AccessPolicy | None = getattr(request.app.state, "access", None)
    if policy is None:
        raise SlotBusy("The server is still starting; try again shortly.")
    headers = request.headers
    return policy.caller(RequestHeaders(request.method, request.url.scheme, headers.getlist("host"),
                                        headers.getlist("origin"), headers.getlist("authorization")))


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_owned_client(client: ClientName, caller: CallerDep) -> str:
    """The ``{client}`` of a native route, which the caller must be (or be an admin): 403 otherwise."""
    if not caller.may_act_for(client):
        raise Forbidden("This API key may act only for its own client.")
    return client


OwnedClientDep = Annotated[str, Depends(get_owned_client)]

DEFAULT_CLIENT = "default"


async def get_client_id(request: Request, caller: CallerDep) -> str:
    """The client a protocol request (V2, TF Serving) acts for: the key's client, or ``X-Client-Id`` for an admin
    key and in open mode (``default`` when absent there). One ``X-Client-Id`` header at most."""
    given = request.headers.getlist("x-client-id")
    if len(given) > 1:
        raise InvalidRequest("Send at most one X-Client-Id header.")
    named = given[0] if given else None
    if named is not None and not is_valid_name(named):
        raise InvalidRequest("X-Client-Id is not a valid client name: use 1-64 letters, digits, '.', '_' and '-'.")
    if named is None:
        return caller.client or DEFAULT_CLIENT
    if not caller.may_act_for(named):
        raise Forbidden("X-Client-Id may name another client only with an admin key.")
    return named


ClientIdDep = Annotated[str, Depends(get_client_id)]

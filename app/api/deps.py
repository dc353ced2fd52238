"""Typed dependencies shared by every router: the registry, the caller, and the client a request acts for."""

from typing import Annotated

from fastapi import Depends, Path, Request

from app.api.access import AccessPolicy, Caller, RequestHeaders
from app.errors import Forbidden, InvalidRequest, SlotBusy
from app.names import NAME_PATTERN, is_valid_name
from app.registry import Registry


async def get_registry(request: Request) -> Registry:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise SlotBusy("The server is still starting; try again shortly.")
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]

def caller_of(request: Request) -> Caller:
    """Who is calling: the key's client (401 without a valid key), or anyone on loopback in open mode."""
    policy: AccessPolicy | None = getattr(request.app.state, "access", None)
    if policy is None:
        raise SlotBusy("The server is still starting; try again shortly.")
    return policy.caller(RequestHeaders.of(request.scope))


# Every route that is not a health check or the docs takes exactly one of CallerDep, OwnedClientDep or ClientIdDep:
# each authenticates (one dependency layer per request, the cheapest FastAPI allows). tests/api/test_tenants.py
# calls every operation the OpenAPI marks as keyed without a key and expects 401. The bearer scheme itself is
# declared in the OpenAPI by ``openapi.with_bearer_scheme``.

async def get_caller(request: Request) -> Caller:
    return caller_of(request)


CallerDep = Annotated[Caller, Depends(get_caller)]


# The pattern is documented, and checked after the key: a request without a key is 401 whatever its path says.
UncheckedClientName = Annotated[str, Path(description="Client id: 1-64 of A-Z a-z 0-9 . _ -", examples=["alice"],
                                          json_schema_extra={"pattern": NAME_PATTERN})]


async def get_owned_client(request: Request, client: UncheckedClientName) -> str:
    """The ``{client}`` of a native route, which the caller must be (or be an admin): 403 otherwise."""
    caller = caller_of(request)
    if not is_valid_name(client):
        raise InvalidRequest(f"'{client}' is not a valid client name: use 1-64 letters, digits, '.', '_' and '-'.")
    if not caller.may_act_for(client):
        raise Forbidden("This API key may act only for its own client.")
    return client


OwnedClientDep = Annotated[str, Depends(get_owned_client)]

DEFAULT_CLIENT = "default"


async def get_client_id(request: Request) -> str:
    """The client a protocol request (V2, TF Serving) acts for: the key's client, or ``X-Client-Id`` for an admin
    key and in open mode (``default`` when absent there). One ``X-Client-Id`` header at most."""
    caller = caller_of(request)
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

"""The native REST API: models, clients (load, swap, predict, unload) and slots."""

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request

from app import errors
from app.api.access import Caller
from app.api.deps import CallerDep, OwnedClientDep, RegistryDep
from app.api.errors import error_responses
from app.api.payload import payload
from app.api.responses import FastJSONResponse
from app.api.schemas import (
    PREDICT_BODY,
    PREDICT_RESPONSE,
    ClientRecord,
    Identity,
    LoadRequest,
    LoadResponse,
    ModelList,
    SlotList,
    UnloadResponse,
    json_body,
)

# every route needs a key when the server has keys; routes on /clients/{client} also need to own that client
_AUTH_ERRORS = (errors.Unauthenticated, errors.Forbidden)
# what reading any body can answer: too big, too slow, over the request budget
_BODY_ERRORS = (errors.PayloadTooLarge, errors.RequestTimeout, errors.TooManyRequests)
router = APIRouter(prefix="/v1")


@router.get("/models", response_model=ModelList, tags=["models"], summary="Models in the store",
            description="Open to every key.", responses=error_responses(*_AUTH_ERRORS))
async def list_models(_: CallerDep, registry: RegistryDep) -> dict:
    models = await registry.models()
    return {"models": [{"name": m.name, "format": m.format, "size_bytes": m.size_bytes} for m in models]}


@router.put(
    "/clients/{client}/model", response_model=LoadResponse, tags=["clients"],
    summary="Load or swap the client's model",
    description="The client's first load claims a free slot. A later load swaps in place, in the same slot: "
    "`side_by_side` when both models fit, else `replace`. If the load fails the client keeps its previous model, "
    "named in the error's `serving` field.",
    openapi_extra={"requestBody": json_body(LoadRequest)},
    responses=error_responses(*_AUTH_ERRORS, *_BODY_ERRORS, errors.ModelNotFound, errors.ModelInvalid,
                              errors.ModelUnsafe, errors.NoFreeSlot, errors.ModelTooLarge, errors.StateUnavailable),
)
async def load_model(client: OwnedClientDep, request: Request, registry: RegistryDep) -> dict:
    async with payload(request, client) as body:
        asked = await body.model(LoadRequest)
    result = await registry.load(client, asked.model, asked.max_batch_size, asked.max_delay_us, asked.version)
    return {**asdict(result.record), "load_ms": round(result.load_ms, 3), "previous_model": result.previous_model,
            "freed_bytes": result.freed_bytes, "residue_bytes": result.residue_bytes, "strategy": result.strategy}


@router.post(
    "/clients/{client}/predict", tags=["clients"], summary="Predict with the client's model",
    openapi_extra={"requestBody": PREDICT_BODY},
    responses={200: PREDICT_RESPONSE, **error_responses(
        *_AUTH_ERRORS, *_BODY_ERRORS, errors.ClientNotFound, errors.InvalidInput, errors.OutputNotFinite,
        errors.SlotBusy, errors.SlotOutOfMemory, errors.NoFreeSlot, errors.StateUnavailable)},
)
async def predict(client: OwnedClientDep, request: Request, registry: RegistryDep) -> FastJSONResponse:
    # No pydantic model here: validating large nested float lists costs more than the model; the registry checks
    # shapes and dtypes against the model's own inputs instead.
    async with payload(request, client) as body:
        return FastJSONResponse(await registry.predict(client, await body.json()))


@router.delete(
    "/clients/{client}/model", response_model=UnloadResponse, tags=["clients"],
    summary="Unload the client's model and free its slot",
    responses=error_responses(*_AUTH_ERRORS, errors.ClientNotFound, errors.StateUnavailable),
)
async def unload_model(client: OwnedClientDep, registry: RegistryDep) -> dict:
    return asdict(await registry.unload(client))


@router.get("/clients/{client}", response_model=ClientRecord, tags=["clients"], summary="The client's record",
            description="With replicas, asking a replica for a client another one held takes it over (as a "
            "prediction does) and answers once its model serves.",
            responses=error_responses(*_AUTH_ERRORS, errors.ClientNotFound, errors.SlotBusy, errors.NoFreeSlot,
                                      errors.StateUnavailable))
async def get_client(client: OwnedClientDep, registry: RegistryDep) -> dict:
    return asdict(await registry.client(client))


@router.get("/slots", response_model=SlotList, tags=["slots"], summary="Every slot, empty ones included",
            description="An admin key (and open mode) sees every slot in full. A tenant key sees its own slot in "
            "full and every other slot only as `empty` or `occupied`, without who holds it or which model, and "
            "with its memory figures rounded up to a 64th of the slot (1 MiB at least).",
            responses=error_responses(*_AUTH_ERRORS))
async def list_slots(caller: CallerDep, registry: RegistryDep) -> dict:
    return {"slots": [_visible(asdict(s), caller) for s in await registry.slot_records()],
            "replica": registry.settings.replica_id}


@router.get("/whoami", response_model=Identity, tags=["clients"], summary="Who the API key is",
            description="The key's client and whether it may act for every client, so a tool (the /ui page) knows "
            "which client to act for. Open mode answers `{\"client\": null, \"admin\": true}`.",
            responses=error_responses(*_AUTH_ERRORS))
async def whoami(caller: CallerDep) -> dict:
    return {"client": caller.client, "admin": caller.admin}


def _visible(slot: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """A slot as ``caller`` may see it: in full if it may act for the slot's client; else without its holder and
    activity, with figures rounded up to a 64th of the slot (1 MiB at least), so they tell how full it is but do not
    fingerprint the model in it. A free slot is rounded too: its peak and residue are its last client's."""
    if caller.admin or (slot["client"] is not None and caller.may_act_for(slot["client"])):
        return slot
    memory = slot["memory"]
    step = max(1 << 20, memory["limit_bytes"] // 64)
    coarse = {k: -(-v // step) * step for k, v in memory.items() if k != "limit_bytes"}
    return {**slot, "state": "occupied" if slot["client"] is not None else slot["state"], "client": None,
            "model": None, "memory": {**memory, **coarse}, "residue_bytes": -(-slot["residue_bytes"] // step) * step,
            "predictions_total": None}

"""The native REST API: models, clients (load, swap, predict, unload) and slots."""

from dataclasses import asdict

from fastapi import APIRouter, Request

from app import errors
from app.api.deps import RegistryDep
from app.api.errors import error_responses
from app.api.responses import FastJSONResponse, read_json, read_model
from app.api.schemas import (
    PREDICT_BODY, PREDICT_RESPONSE, json_body, ClientName, ClientRecord, LoadRequest, LoadResponse, ModelList, SlotList,
    UnloadResponse,
)

router = APIRouter(prefix="/v1")


@router.get("/models", response_model=ModelList, tags=["models"], summary="Models in the store")
async def list_models(registry: RegistryDep) -> dict:
    return {"models": [{"name": m.name, "format": m.format, "size_bytes": m.size_bytes} for m in registry.models()]}


@router.put(
    "/clients/{client}/model", response_model=LoadResponse, tags=["clients"],
    summary="Load or swap the client's model",
    description="The client's first load claims a free slot. A later load swaps in place, in the same slot: "
    "`side_by_side` when both models fit, else `replace`. If the load fails the client keeps its previous model, "
    "named in the error's `serving` field.",
    openapi_extra={"requestBody": json_body(LoadRequest)},
    responses=error_responses(errors.ModelNotFound, errors.ModelInvalid, errors.NoFreeSlot, errors.ModelTooLarge),
)
async def load_model(client: ClientName, request: Request, registry: RegistryDep) -> dict:
    body = await read_model(request, LoadRequest)
    result = await registry.load(client, body.model, body.max_batch_size, body.max_delay_us, body.version)
    return {**asdict(result.record), "load_ms": round(result.load_ms, 3), "previous_model": result.previous_model,
            "freed_bytes": result.freed_bytes, "residue_bytes": result.residue_bytes, "strategy": result.strategy}


@router.post(
    "/clients/{client}/predict", tags=["clients"], summary="Predict with the client's model",
    openapi_extra={"requestBody": PREDICT_BODY},
    responses={200: PREDICT_RESPONSE, **error_responses(
        errors.ClientNotFound, errors.InvalidInput, errors.PayloadTooLarge, errors.SlotBusy, errors.SlotOutOfMemory)},
)
async def predict(client: ClientName, request: Request, registry: RegistryDep) -> FastJSONResponse:
    # No pydantic model here: validating large nested float lists costs more than the model; the registry checks
    # shapes and dtypes against the model's own inputs instead.
    return FastJSONResponse(await registry.predict(client, await read_json(request)))


@router.delete(
    "/clients/{client}/model", response_model=UnloadResponse, tags=["clients"],
    summary="Unload the client's model and free its slot",
    responses=error_responses(errors.ClientNotFound),
)
async def unload_model(client: ClientName, registry: RegistryDep) -> dict:
    return asdict(await registry.unload(client))


@router.get("/clients/{client}", response_model=ClientRecord, tags=["clients"], summary="The client's record",
            responses=error_responses(errors.ClientNotFound))
async def get_client(client: ClientName, registry: RegistryDep) -> dict:
    return asdict(await registry.client(client))


@router.get("/slots", response_model=SlotList, tags=["slots"], summary="Every slot, empty ones included")
async def list_slots(registry: RegistryDep) -> dict:
    return {"slots": [asdict(s) for s in await registry.slot_records()]}

"""Liveness and readiness."""

from fastapi import APIRouter, Request

from app.api.errors import error_responses
from app.api.schemas import Status
from app.errors import SlotBusy

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Status, summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Status, summary="The slots exist and the server takes requests",
            responses=error_responses(SlotBusy))
async def readyz(request: Request) -> dict[str, str]:
    if getattr(request.app.state, "registry", None) is None:
        raise SlotBusy("The server is still starting; try again shortly.")
    return {"status": "ok"}

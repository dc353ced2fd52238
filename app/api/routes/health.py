"""Liveness and readiness."""

from fastapi import APIRouter, Request

from app.api.errors import error_responses
from app.api.schemas import Status
from app.errors import SlotBusy

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Status, summary="The process is up",
            description="200 as soon as the process serves HTTP, while it still plans slots or restores clients.")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Status, summary="Every remembered client is back and the server takes requests",
            description="503 while the slots are planned and while the clients remembered from the last run are "
            "loaded back; 200 after (a client whose model could not be put back is then `failed`). With a shared "
            "(PostgreSQL) state, 200 once their slots are claimed: their requests wait for their models here.",
            responses=error_responses(SlotBusy))
async def readyz(request: Request) -> dict[str, str]:
    check_ready(request)
    return {"status": "ok"}


def check_ready(request: Request) -> None:
    """``SlotBusy`` (503) until the registry exists and its restore is done (also used by V2's health/ready)."""
    restoring = getattr(request.app.state, "restoring", None)
    if getattr(request.app.state, "registry", None) is None:
        raise SlotBusy("The server is still starting; try again shortly.")
    registry = request.app.state.registry
    # with a shared state, a replica is ready (in the ingress's ring) once it has claimed the slots of the clients
    # it puts back: their requests then wait here for their models, rather than go to another replica meanwhile,
    # which would take them over only to hand them back
    if restoring is not None and not restoring.done() and not (registry.memory.shared and registry.claimed):
        raise SlotBusy("The server is putting back the clients it remembers; try again shortly.")

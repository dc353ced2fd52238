"""``/metrics``: Prometheus's text exposition of the app's metrics (``app/api/metrics.py`` says which).

It names no client and no model, but its exact per-slot figures are what ``/v1/slots`` rounds off for tenant keys (so
they cannot fingerprint each other's models): with keys, only an admin key may scrape; in open mode, loopback callers
may, as for every other route.
"""

from fastapi import APIRouter, Request, Response

from app import errors
from app.api.deps import CallerDep
from app.api.errors import error_responses
from app.api.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])
_DESCRIPTION = ("Prometheus text format (0.0.4): every slot's memory figures and phase, requests by API and "
                "status, request durations, batch sizes and load times. Needs an admin key when the server has keys "
                "(Prometheus: `authorization: {credentials: <admin key>}`); in open mode, a loopback caller.")


@router.get("/metrics", summary="Prometheus metrics", description=_DESCRIPTION, response_class=Response,
            responses={200: {"description": "The metrics, in Prometheus's text format.",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       **error_responses(errors.Unauthenticated, errors.Forbidden)})
async def metrics(caller: CallerDep, request: Request) -> Response:
    if not caller.admin:
        raise errors.Forbidden("Metrics need an admin key: they show every slot's exact figures.")
    registry = request.app.state.registry  # None while the server starts: no slot figures yet
    slots = await registry.slot_records() if registry is not None else []
    return Response(request.app.state.metrics.render(slots), media_type=CONTENT_TYPE)

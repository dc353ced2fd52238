"""The Open Inference Protocol (KServe V2 / Triton) over REST: a thin facade over the one registry.

The model name in a URL is a model in the store; the caller is its API key's client (an admin key, or open mode, may
name another with the ``X-Client-Id`` header; "default" when absent in open mode). Health routes need no key.
Loading a model puts it in the caller's slot (swapping out what it had); inference and metadata need the caller to
have loaded that model. A model's version is a versioned SavedModel's own number, else "1". Errors are ``{"error": "<message>"}`` with Triton's
status codes, rendered by this router's own route class so the native API keeps its own error shape.
"""

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from app import __version__, errors
from app.api import v2_codec as codec
from app.api.deps import CallerDep, ClientIdDep, RegistryDep
from app.api.flat_errors import flat_error_route
from app.api.model_routes import Handler, model_route
from app.api.payload import payload
from app.api.responses import FastJSONResponse
from app.api.routes.health import check_ready
from app.names import NAME_PATTERN, VERSION_PATTERN
from app.registry import ModelView, Registry

log = logging.getLogger("slotserve.api")

# Triton answers bad requests, bad tensors and unknown or unready models alike with 400 (so every 422 of the native
# API is 400 here); capacity errors keep their own statuses (503 no_free_slot / slot_busy, 507 model_too_large /
# slot_out_of_memory, 413 too large, 429 over the request budget).
_BAD_REQUEST = (errors.ModelNotFound, errors.ClientNotFound, errors.ModelNotLoaded)
_INLINE = 1 << 20  # bodies up to 1 MiB are parsed on the event loop; larger ones in a worker thread
# the caller's model in the repository index, by its slot's phase (Triton's model states)
_INDEX_STATES = {"ready": "READY", "swapping": "READY", "loading": "LOADING", "replacing": "LOADING",
                 "unloading": "UNLOADING"}


def _status(err: errors.SlotServeError) -> int:
    """The status Triton would use for this error."""
    return 400 if isinstance(err, _BAD_REQUEST) or err.status == 422 else int(err.status)


# OpenAPI documentation of the bodies, as JSON schemas (the routes read and write their bodies themselves).
def _obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, **({"required": list(required)} if required else {})}


def _arr(items: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"type": "array", "items": items, "description": description}


def _text(description: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


_BOOL = {"type": "boolean"}
_META = _obj(("name", "datatype", "shape"), name=_text(), datatype=_text("V2 datatype", enum=list(codec.DATATYPES)),
             shape=_arr({"type": "integer"}, "-1 marks a variable dimension; the batch dimension always is."))
_TENSOR = _obj(("name", "datatype", "shape"), **_META["properties"], data=_arr(
    {}, "Values, row-major: flat or nested in requests, flat in responses."), parameters=_obj(binary_data_size=_text(
        "The tensor's bytes follow the JSON header (binary tensor data extension).", type="integer")))
ERROR = _obj(("error",), error=_text("What went wrong, in a sentence."))
MODEL_METADATA = _obj(name=_text(), versions=_arr(_text()), platform=_text("e.g. tensorflow_keras"),
                      inputs=_arr(_META), outputs=_arr(_META))
INDEX = _arr(_obj(name=_text(), version=_text(), state=_text(
    "READY when the calling client's model serves (also while it swaps side by side), LOADING while it loads, "
    "UNLOADING while it unloads", enum=["READY", "LOADING", "UNLOADING", "UNAVAILABLE"]), reason=_text()))
INFER_REQUEST = _obj(("inputs",), id=_text("Echoed in the response."), inputs=_arr(_TENSOR), parameters=_obj(
    binary_data_output=_BOOL), outputs=_arr(_obj(name=_text(), parameters=_obj(binary_data=_BOOL)),
                                          "Only these outputs, in this order (default: all)."))
INFER_RESPONSE = _obj(model_name=_text(), model_version=_text(), id=_text("The request's id, if it had one."),
                      outputs=_arr(_TENSOR))
SERVER_METADATA = _obj(name=_text(enum=["slotserve"]), version=_text(), extensions=_arr(_text()))
_LOAD_BODY = _obj(parameters={"type": "object", "description": "Accepted; `config` and `file:` overrides are refused."})
_NOTES = {400: "Bad request or tensor, unknown model, or a model the caller has not loaded.",
          401: "No API key, or an unknown or revoked one (sent with WWW-Authenticate: Bearer).",
          403: "X-Client-Id names another client without an admin key.",
          408: "The body did not arrive within body_timeout_s.", 413: "The body is over the server's max_body_mb.",
          429: "The server's memory for requests in flight is spent (sent with Retry-After).",
          503: "Starting, no free slot, or the slot is busy.",
          507: "model_too_large or slot_out_of_memory."}


def _docs(schema: dict[str, Any], *statuses: int, binary: bool = False,
          authenticated: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses``: ``schema`` on success (JSON, or its binary extension), V2 errors for ``statuses``."""
    ok = {"application/json": {"schema": schema}} | ({"application/octet-stream": {}} if binary else {})
    # "default" also keeps FastAPI from documenting a 422 these routes never send (their validation errors are 400)
    return {200: {"description": "Success", "content": ok}, **{
        s: {"description": _NOTES[s], "content": {"application/json": {"schema": ERROR}}}
        for s in ((401, 403, *statuses) if authenticated else statuses)},
        "default": {"description": "Any other error, same shape", "content": {"application/json": {"schema": ERROR}}}}


def _request_body(schema: dict[str, Any], required: bool = False, **examples: Any) -> dict[str, Any]:
    content = {"schema": schema, "examples": {k: {"value": v} for k, v in examples.items()}}
    return {"requestBody": {"required": required, "content": {"application/json": content}}}


_ROUTE = flat_error_route(_status)
health_router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (V2)"], route_class=_ROUTE)  # no key needed
router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (V2)"], route_class=_ROUTE)
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="A model in the store.", examples=["tiny"])]
ModelVersion = Annotated[str, Path(pattern=VERSION_PATTERN, examples=["1"],
                                   description="The model version: a versioned SavedModel's number, else \"1\".")]


@health_router.get("/health/live", summary="The server is live", responses=_docs(_obj(live=_BOOL), authenticated=False))
async def live() -> dict[str, bool]:
    return {"live": True}


@health_router.get("/health/ready", summary="The server is ready (its slots exist)",
                   responses=_docs(_obj(ready=_BOOL), 503, authenticated=False))
async def ready(request: Request) -> dict[str, bool]:
    check_ready(request)
    return {"ready": True}


@router.get("", summary="Server metadata", responses=_docs(SERVER_METADATA),
            description="Name, version and the protocol extensions this server supports.")
async def server_metadata(_: CallerDep) -> dict[str, Any]:
    return {"name": "slotserve", "version": __version__, "extensions": ["binary_tensor_data", "model_repository"]}


async def _caller_view(registry: Registry, client: str, name: str, version: str | None) -> ModelView:
    """The caller's loaded ``name``, which must be ``version`` when one is named (the loaded version, or "1"),
    waiting out a swap as predictions do."""
    try:
        view = await registry.view(client, name)
    except (errors.ClientNotFound, errors.ModelNotLoaded):
        raise _unavailable(registry, client, name) from None
    _check_version(view, name, version)
    return view


def _check_version(view: ModelView, name: str, version: str | None) -> None:
    served = codec.served_version(view.version)
    if version is not None and int(version) != int(served):
        raise errors.ModelNotFound(f"Request for unknown model: '{name}' version {int(version)} is not loaded; "
                                   f"the caller has version {served}.")


def _unavailable(registry: Registry, client: str, name: str, hint: bool = True) -> errors.SlotServeError:
    """The error for a model the caller cannot use: not in the store, or not loaded by this caller."""
    if not registry.store.has(name):  # a few stat calls, never a listing
        return errors.ModelNotFound(f"Request for unknown model: '{name}' is not in the model store.")
    loaded = registry.loaded_model(client)
    has = f"it has '{loaded[0]}' loaded" if loaded else "it has no model loaded"
    advice = f"; load it with POST /v2/repository/models/{name}/load" if hint else ""
    return errors.ModelNotLoaded(f"Model '{name}' is not loaded for client '{client}' ({has}){advice}.")


async def _json_object(request: Request, client: str) -> dict[str, Any]:
    """A small JSON object body; an absent or empty body is ``{}`` (clients send none for the repository calls)."""
    async with payload(request, client) as reader:
        raw = await reader.raw()
        value = await reader.decode(raw) if raw.strip() else {}
    if not isinstance(value, dict) or not isinstance(value.get("parameters", {}), dict):
        raise errors.InvalidRequest("The body must be a JSON object; its 'parameters', if any, an object.")
    return value


def _model_route(method: str, suffix: str, **kwargs: Any) -> Callable[[Handler], Handler]:
    return model_route(router, ModelName, ModelVersion, "/models", method, suffix, **kwargs)


@_model_route("GET", "", summary="Model metadata", responses=_docs(MODEL_METADATA, 400),
              description="Inputs and outputs of the model the caller has loaded, with V2 datatypes and shapes "
              "(-1 for variable dimensions). 400 if the model is unknown or the caller has not loaded it.")
async def model_metadata(request: Request, registry: Registry, client: str, name: str,
                         version: str | None) -> dict[str, Any]:
    return codec.model_metadata(await _caller_view(registry, client, name, version))


@_model_route("GET", "/ready", summary="Whether the caller has the model ready",
              responses=_docs(_obj(name=_text(), ready=_BOOL), 400),
              description="200 when the calling client has this model loaded and ready, else 400 (as Triton).")
async def model_ready(request: Request, registry: Registry, client: str, name: str,
                      version: str | None) -> dict[str, Any]:
    await _caller_view(registry, client, name, version)
    return {"name": name, "ready": True}


@_model_route("POST", "/infer", summary="Inference",
              responses=_docs(INFER_RESPONSE, 400, 408, 413, 429, 503, 507, binary=True),
              openapi_extra=_request_body(INFER_REQUEST, True, json={"id": "r1", "inputs": [
                  {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [[1, 2, 3, 4]]}]}),
              description="JSON tensors (flat or nested `data`), or binary tensor data: the JSON header's length in "
              "the `Inference-Header-Content-Length` header, then each binary input's little-endian bytes in order. "
              "Binary outputs (`binary_data` per output, `binary_data_output` per request) follow the JSON header "
              "the same way, as application/octet-stream. Inputs are converted to the model's dtypes when no "
              "value changes. 400 if the caller has not loaded the model.")
async def infer(request: Request, registry: Registry, client: str, name: str, version: str | None) -> Response:
    async with payload(request, client) as reader:
        body = await reader.raw()
        header, binary = codec.split_body(body, request.headers.get("inference-header-content-length"))
        parsed = codec.parse_infer(await reader.decode(header), binary)
        await reader.lease.reserve(len(binary))  # the arrays binary tensors become (a cast copies them)
        max_rows = registry.settings.max_rows
        try:  # the registry waits out a swap, checks the model is the caller's, validates (decode) and batches
            def decode(view: ModelView) -> dict[str, Any]:  # run() waits out swaps and checks the model first
                _check_version(view, name, version)
                return codec.decode_inputs(parsed, view, max_rows)

            view, outputs = await registry.run(client, decode, model=name, offload=len(body) > _INLINE)
        except (errors.ClientNotFound, errors.ModelNotLoaded):
            raise _unavailable(registry, client, name) from None
        content, json_length = codec.encode_response(name, parsed, view, outputs)
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(json_length)})


@router.post("/repository/index", summary="Every model in the store, READY if the caller has it loaded",
             openapi_extra=_request_body(_obj(ready=_BOOL), empty={}, ready_only={"ready": True}),
             responses=_docs(INDEX, 400),
             description="`ready: true` lists only the models the caller has ready. The body may be empty.")
async def repository_index(request: Request, client: ClientIdDep, registry: RegistryDep) -> FastJSONResponse:
    body = await _json_object(request, client)
    if not isinstance(body.get("ready", False), bool):
        raise errors.InvalidRequest("'ready' must be true or false.")
    name, phase = registry.loaded_model(client) or (None, None)
    state = _INDEX_STATES.get(phase, "UNAVAILABLE")
    entries = [{"name": m.name, "version": codec.served_version(m.version),
                "state": state if m.name == name else "UNAVAILABLE",
                "reason": "" if m.name == name else "not loaded by this client"}
               for m in await registry.models() if (m.name == name and state == "READY") or not body.get("ready")]
    return FastJSONResponse(entries)


@router.post("/repository/models/{name}/load", summary="Load the model into the caller's slot",
             openapi_extra=_request_body(_LOAD_BODY, empty={}),
             responses=_docs(_obj(name=_text(), load=_BOOL), 400, 503, 507),
             description="The caller's first load claims a free slot; a later one swaps its model in place. "
             "The body may be empty; configuration or file overrides (`config`, `file:...`) are refused.")
async def load_model(name: ModelName, request: Request, client: ClientIdDep, registry: RegistryDep) -> dict:
    parameters = (await _json_object(request, client)).get("parameters", {})
    if any(key == "config" or key.startswith("file:") for key in parameters):
        raise errors.InvalidRequest("Configuration and file overrides are not supported; models load as stored.")
    await registry.load(client, name)
    return {"name": name, "load": True}


@router.post("/repository/models/{name}/unload", summary="Unload the caller's model and free its slot",
             openapi_extra=_request_body(_LOAD_BODY, empty={}),
             responses=_docs(_obj(name=_text(), unload=_BOOL), 400, 503),
             description="400 unless the calling client has this model loaded. The body may be empty.")
async def unload_model(name: ModelName, request: Request, client: ClientIdDep, registry: RegistryDep) -> dict:
    await _json_object(request, client)
    try:
        await registry.unload(client, name)  # checks the name under the slot's lock: a racing swap is not unloaded
    except (errors.ClientNotFound, errors.ModelNotLoaded):
        failure = _unavailable(registry, client, name, hint=False)
    else:
        return {"name": name, "unload": True}
    raise failure

"""TF Serving's REST API, as a thin facade over the registry: predict, model status and model metadata.

The model in the path must be the one the calling client (its API key's; an admin key or open mode may name one with
``X-Client-Id``, else "default") has loaded; loading goes
through the native API or the V2 repository. A versioned SavedModel serves the version its client loaded; every
other model has one version, "1". Errors are TF Serving's ``{"error": "<message>"}``, rendered here (not by the
app's handlers, which keep the native shape) with TF Serving's status for each gRPC code: NOT_FOUND 404,
INVALID_ARGUMENT and FAILED_PRECONDITION 400, UNAVAILABLE 503. Two statuses stay this server's own, as documented
for the native API: 413 for an oversized request and 507 for a model or prediction that does not fit its slot
(TF Serving would say RESOURCE_EXHAUSTED, 429, which clients read as "slow down", and waiting would not help).
"""

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from app import errors
from app.api.deps import CallerDep, RegistryDep
from app.api.flat_errors import flat_error_route
from app.api.model_routes import Handler, model_route
from app.api.payload import payload
from app.api.responses import FastJSONResponse
from app.names import NAME_PATTERN, VERSION_PATTERN
from app.registry import ModelView, Registry
from app.registry.tensors import TensorInfo, format_response, parse_request

log = logging.getLogger("slotserve.api")

_OFFLOAD_BYTES = 256 << 10  # bodies larger than this are converted to arrays in a worker thread
_LOCAL_STATUS = {errors.PayloadTooLarge: 413, errors.ModelTooLarge: 507, errors.SlotOutOfMemory: 507}
_DTYPES = {"float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE", "bfloat16": "DT_BFLOAT16",
           "bool": "DT_BOOL", "object": "DT_STRING", "complex64": "DT_COMPLEX64", "complex128": "DT_COMPLEX128"}


def _status(err: errors.SlotServeError) -> int:
    """TF Serving's status for the error (this project's 422s are INVALID_ARGUMENT: 400)."""
    return _LOCAL_STATUS.get(type(err), 400 if err.status == 422 else int(err.status))


# ---- OpenAPI descriptions (the routes read their bodies themselves, so these are written out) ------------------

_TEXT, _ANY = {"type": "string"}, {}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": _TEXT}}
_NOTES = {400: "INVALID_ARGUMENT / FAILED_PRECONDITION: bad name, version, body, signature or tensor",
          401: "UNAUTHENTICATED: no API key, or an unknown or revoked one (with WWW-Authenticate: Bearer)",
          403: "PERMISSION_DENIED: X-Client-Id names another client without an admin key",
          404: "NOT_FOUND: no such model (or version) in the store, or the calling client has not loaded it",
          408: "The body did not arrive within body_timeout_s",
          413: "The body or its row count is over the server's limit",
          429: "The server's memory for requests in flight is spent (sent with Retry-After)",
          503: "UNAVAILABLE: the client's slot is mid-swap (sent with Retry-After), or the server is starting",
          507: "The prediction exhausted the slot's memory (this server's own status, as in its native API)"}
STATUS = {"type": "object", "properties": {"model_version_status": {"type": "array", "items": {
    "type": "object", "properties": {"version": _TEXT, "state": {"type": "string", "enum": ["AVAILABLE"]},
                                     "status": {"type": "object", "properties": {
                                         "error_code": {"type": "string", "enum": ["OK"]}, "error_message": _TEXT}}}}}},
    "example": {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}}
METADATA = {"type": "object", "description": "GetModelMetadataResponse: every signature of the loaded model with its "
            "inputs and outputs (dtype, shape with -1 for variable dimensions).",
            "properties": {"model_spec": {"type": "object"}, "metadata": {"type": "object"}}}
PREDICT_RESPONSE = {"type": "object", "description": "'predictions' for an 'instances' request (one entry per row, "
                    "an object by output name when there are several), 'outputs' for an 'inputs' request.",
                    "properties": {"predictions": {"type": "array", "items": _ANY},
                                   "outputs": {"oneOf": [{"type": "array", "items": _ANY}, {"type": "object"}]}},
                    "example": {"predictions": [3.5, 4.0, 5.5]}}
PREDICT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "Exactly one of 'instances' (rows) or 'inputs' (columns), optionally "
    "'signature_name'; nothing else.",
    "properties": {
        "signature_name": {"type": "string", "description": "A signature of the model (default: serving_default)."},
        "instances": {"type": "array", "minItems": 1, "items": _ANY, "description": "One entry per row: the row "
                      "itself for a one-input signature, an object by input name for several."},
        "inputs": {"description": "A batch for a one-input signature, or an object of batches by input name.",
                   "oneOf": [{"type": "array", "minItems": 1, "items": _ANY},
                             {"type": "object", "minProperties": 1}]}},
    "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}], "additionalProperties": False},
    "examples": {"rows": {"value": {"instances": [1.0, 2.0, 5.0]}},
                 "named rows": {"value": {"instances": [{"signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]}]}},
                 "columns": {"value": {"signature_name": "serving_default",
                                       "inputs": {"signal": [[1, 2, 3, 4, 5]], "sensor": [[[1, 2], [3, 4]]]}}}}}}}}


def _docs(schema: dict[str, Any], *statuses: int) -> dict[int | str, dict[str, Any]]:
    error = {"application/json": {"schema": ERROR}}
    return {200: {"description": "Success", "content": {"application/json": {"schema": schema}}},
            **{s: {"description": _NOTES[s], "content": error} for s in (400, 401, 403, 404, 503, *statuses)},
            "default": {"description": "Any other error, same shape", "content": error}}


router = APIRouter(prefix="/v1/models", tags=["TF Serving REST"], route_class=flat_error_route(_status))
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="A model in the store.", examples=["tiny"])]
ModelVersion = Annotated[str, Path(pattern=VERSION_PATTERN, description="The model version: 1-18 digits.",
                                   examples=["1"])]
def _model_route(method: str, suffix: str, **kwargs: Any) -> Callable[[Handler], Handler]:
    return model_route(router, ModelName, ModelVersion, "", method, suffix, **kwargs)


# ---- routes ------------------------------------------------------------------------------------------------------

@_model_route("POST", ":predict", summary="Predict (TF Serving)", openapi_extra=PREDICT_BODY,
              responses=_docs(PREDICT_RESPONSE, 408, 413, 429, 507),
              description="TF Serving's Predict API on the calling client's model: `instances` (rows) or `inputs` "
              "(columns), optionally `signature_name`; answers `predictions` or `outputs` as TF Serving does.")
async def predict(request: Request, registry: RegistryDep, client: str, name: str, version: str | None) -> Response:
    async with payload(request, client) as reader:
        body = await reader.json()
        return await _predict(registry, client, name, version, body, len(await reader.raw()) > _OFFLOAD_BYTES)


async def _predict(registry: Registry, client: str, name: str, version: str | None, body: Any,
                   offload: bool) -> Response:
    signature = body.get("signature_name") if isinstance(body, dict) else None
    if signature is not None and not isinstance(signature, str):
        raise errors.InvalidRequest("'signature_name' must be a string.")
    signature = signature or None  # TF Serving reads "" as the default signature
    columnar = False

    def decode(view: ModelView) -> dict[str, Any]:
        nonlocal columnar
        _check_version(view, version)
        arrays, columnar = parse_request(body, view.inputs, registry.settings.max_rows, extra={"signature_name"})
        return arrays

    try:
        view, outputs = await registry.run(client, decode, model=name, offload=offload, signature=signature)
    except (errors.ClientNotFound, errors.ModelNotLoaded) as exc:
        raise _not_served(registry, client, name, version, exc) from None
    return FastJSONResponse(format_response(outputs, view.outputs, columnar))


@_model_route("GET", "", summary="Model status (TF Serving)", responses=_docs(STATUS),
              description="The version of this model the calling client has loaded, as TF Serving's "
              "`model_version_status`; 404 unless the client has loaded it.")
async def status(request: Request, registry: RegistryDep, client: str, name: str, version: str | None) -> dict:
    view = await _view(registry, client, name, version)
    return {"model_version_status": [{"version": _served(view), "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


@_model_route("GET", "/metadata", summary="Model metadata (TF Serving)", responses=_docs(METADATA),
              description="TF Serving's GetModelMetadataResponse for the calling client's model: every signature "
              "with its inputs and outputs, derived from the loaded model.")
async def metadata(request: Request, registry: RegistryDep, client: str, name: str, version: str | None) -> dict:
    view = await _view(registry, client, name, version)
    signatures = view.signatures or {view.default_signature: (view.inputs, view.outputs)}
    defs = {sig: {"inputs": _tensors(inputs), "outputs": _tensors(outputs), "method_name": "tensorflow/serving/predict"}
            for sig, (inputs, outputs) in signatures.items()}
    return {"model_spec": {"name": view.name, "signature_name": "", "version": _served(view)},
            "metadata": {"signature_def": {"signature_def": defs}}}


@router.post("/{name:model}:{verb}", summary="Other TF Serving verbs (not served)", responses=_docs(ERROR),
             description="`:classify` and `:regress` need TF Serving's classification and regression signatures; "
             "this server answers `:predict` only, so any other verb is 404.")
@router.post("/{name:model}/versions/{version:model}:{verb}", include_in_schema=False)
async def other_verb(_: CallerDep, name: ModelName,
                     verb: Annotated[str, Path(pattern=r"^[A-Za-z]{1,32}$")]) -> Response:
    raise errors.NotFound(f"This server serves ':predict' only, not ':{verb}' (model '{name}').")


# ---- helpers -----------------------------------------------------------------------------------------------------

def _served(view: ModelView) -> str:
    """The version the client has: a versioned SavedModel's own, else "1" (every other model has one version)."""
    return str(view.version if view.version is not None else 1)


def _check_version(view: ModelView, version: str | None) -> None:
    if version is not None and int(version) != int(_served(view)):
        raise errors.ModelNotFound(f"Version {int(version)} of model '{view.name}' is not loaded for this client; "
                                   f"it has version {_served(view)}.")


async def _view(registry: Registry, client: str, name: str, version: str | None) -> ModelView:
    try:
        view = await registry.view(client, model=name)
    except (errors.ClientNotFound, errors.ModelNotLoaded) as exc:
        raise _not_served(registry, client, name, version, exc) from None
    _check_version(view, version)
    return view


def _not_served(registry: Registry, client: str, name: str, version: str | None,
                exc: errors.SlotServeError) -> errors.SlotServeError:
    """Why the client cannot use ``name``: not in the store (or no such version), else not loaded by it."""
    try:
        model = registry.store.resolve(name)
    except errors.SlotServeError as missing:
        return missing
    versions = model.versions or (1,)
    if version is not None and int(version) not in versions:
        return errors.ModelNotFound(f"Model '{name}' has no version {int(version)}; its versions are "
                                    f"{', '.join(map(str, versions))}.")
    return errors.ModelNotLoaded(f"{exc.message.rstrip('.')}; load it first (PUT /v1/clients/{client}/model).")


def _tensors(infos: list[TensorInfo]) -> dict[str, Any]:
    """TensorInfo protos as TF Serving renders them in JSON (int64 sizes are strings, -1 for variable ones)."""
    return {info.name: {"dtype": _DTYPES.get(info.dtype.name, f"DT_{info.dtype.name.upper()}"),
                        "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in info.shape],
                                         "unknown_rank": False},
                        "name": info.name} for info in infos}

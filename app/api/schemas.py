"""Request and response bodies of the native REST API, as documented in /docs."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.names import NAME_PATTERN

ModelName = Annotated[str, Field(pattern=NAME_PATTERN, description="A model in the store (file name without extension).")]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. model_not_found.")
    message: str = Field(description="A sentence a person understands.")
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Status(BaseModel):
    status: Literal["ok"]


class ModelInfo(BaseModel):
    name: str
    format: str = Field(description="Store format: keras, h5 or savedmodel.")
    size_bytes: int = Field(description="Size of the file on disk.")


class ModelList(BaseModel):
    models: list[ModelInfo]


class Memory(BaseModel):
    limit_bytes: int = Field(description="The slot's hard limit: slot-memory-mb x 2^20.")
    in_use_bytes: int = Field(description="Bytes the slot holds now (GPU: its allocator; CPU: its models' variables).")
    peak_bytes: int = Field(description="Highest in_use_bytes since the client's first load into this slot "
                            "(a side_by_side swap briefly holds both models).")


class Batching(BaseModel):
    max_batch_size: int = Field(description="Most rows stacked into one call of the model.")
    max_delay_us: int = Field(description="Microseconds a batch waits for batchmates (0: never waits).")


PHASES = Literal["empty", "loading", "ready", "swapping", "replacing", "unloading"]
PHASE_DOC = ("loading: a first load (or a restore at start-up), predictions wait; ready: serving; swapping: a new model "
             "loads beside the old one, which keeps answering; replacing: no room for both, predictions wait while "
             "the old model is freed and the new one loaded; unloading: predictions wait, then fail")


class ClientRecord(BaseModel):
    client: str
    model: str | None = Field(description="The model serving, or the one a first load is bringing in; for a "
                              "failed client, the model that could not be put back.")
    slot: int | None = Field(description="Null for a failed client: it holds no slot.")
    device: str | None = Field(description="TensorFlow device of the slot, e.g. /device:GPU:2.")
    state: PHASES | Literal["failed"] = Field(description=PHASE_DOC + "; failed: its model could not be put back "
                                              "at start-up (see reason); it holds no slot until it loads a model.")
    memory: Memory | None
    batching: Batching | None = Field(description="Dynamic batching of this client's model.")
    reason: str | None = Field(None, description="Why a failed client's model could not be put back.")


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"model": "tiny"}, {"model": "medium", "max_batch_size": 32, "max_delay_us": 500}]})
    model: ModelName
    max_batch_size: int | None = Field(None, ge=1, le=1_000_000,
                                       description="Override the server's max_batch_size for this model.")
    max_delay_us: int | None = Field(None, ge=0, le=1_000_000,
                                     description="Override the server's max_delay_us for this model.")
    version: int | None = Field(None, ge=0, description="A version of a versioned SavedModel (default: the highest).")


class LoadResponse(ClientRecord):
    load_ms: float = Field(description="Wall time of the load or swap, milliseconds.")
    previous_model: str | None = Field(description="The model this load replaced, or null.")
    freed_bytes: int = Field(description="Bytes freed by dropping the previous model (0 if none).")
    residue_bytes: int = Field(description="Bytes of the previous model still alive after freeing it (should be 0).")
    strategy: Literal["load", "side_by_side", "replace"] = Field(
        description="load: the slot was empty. side_by_side: the new model was loaded beside the old one, then "
        "switched. replace: no room for both, so predictions were held while the old one was swapped out.")


class UnloadResponse(BaseModel):
    client: str
    model: str = Field(description="The model that was unloaded (or, for a failed client, forgotten).")
    slot: int | None = Field(description="The slot freed; null for a failed client, which held none.")
    freed_bytes: int
    residue_bytes: int
    memory: Memory | None


class SlotInfo(BaseModel):
    slot: int
    device: str
    kind: Literal["gpu", "cpu"]
    state: PHASES | Literal["occupied"] = Field(
        description=PHASE_DOC + "; occupied: held by another client, as a tenant key sees other tenants' slots.")
    client: str | None
    model: str | None
    memory: Memory
    residue_bytes: int = Field(description="Cumulative bytes left behind by this slot's unloads and swaps.")
    predictions_total: int | None = Field(
        description="Requests this slot's models have answered since its client claimed it (a swap or an unload "
        "keeps the count; the next client starts from 0): a rate is the difference of two readings over the time "
        "between them. Null on a slot a tenant key does not hold (another client's activity is not shown).")


class SlotList(BaseModel):
    slots: list[SlotInfo]
    replica: str = Field(description="The replica that answered (its --replica-id): the slots are this server's. "
                         "Behind an ingress, each client's requests reach the replica that holds its model.")


class Identity(BaseModel):
    client: str | None = Field(description="The key's client (an admin key has one too: the client the protocol "
                               "routes act as by default); null in open mode.")
    admin: bool = Field(description="Whether this caller may act for every client (an admin key, or open mode).")


PREDICT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object",
        "description": "Exactly one of 'instances' (rows) or 'inputs' (columns), nothing else. Their values must "
                       "fit the loaded model's inputs (shapes and dtypes in GET /v2/models/{model}).",
        "properties": {
            "instances": {"type": "array", "minItems": 1, "items": {}, "description": "One entry per row: the row "
                          "itself for a one-input model, an object by input name for several inputs."},
            "inputs": {"description": "A batch (list) for a one-input model, an object of batches by input name "
                       "for several inputs.", "oneOf": [{"type": "array", "minItems": 1, "items": {}},
                                                        {"type": "object", "minProperties": 1}]},
        },
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
        "additionalProperties": False,
    }, "examples": {
        "rows": {"value": {"instances": [[0.1, 0.2, 0.3]]}},
        "columns": {"value": {"inputs": {"a": [[1.0, 2.0]], "b": [[3.0]]}}},
    }}},
}

PREDICT_RESPONSE = {
    "description": "'predictions' (one entry per row) for an 'instances' request, 'outputs' for an 'inputs' request.",
    "content": {"application/json": {"schema": {"type": "object", "properties": {
        "predictions": {"type": "array", "items": {}},
        "outputs": {"oneOf": [{"type": "array", "items": {}}, {"type": "object"}]},
    }}, "example": {"predictions": [[0.12, 0.88]]}}},
}


def json_body(schema: type[BaseModel]) -> dict:
    """An OpenAPI requestBody for a route that reads its JSON body itself (see ``read_model``)."""
    return {"required": True, "content": {"application/json": {"schema": schema.model_json_schema()}}}

"""JSON in and out with orjson: numpy arrays are encoded directly, and bodies are parsed whatever their Content-Type."""

import asyncio
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from app.errors import InvalidRequest, PayloadTooLarge

M = TypeVar("M", bound=BaseModel)

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class FastJSONResponse(JSONResponse):
    """JSON encoded by orjson, numpy arrays included (NaN and infinities become null)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_OPTIONS)


_DECODE_INLINE = 1 << 20  # bodies up to 1 MiB are decoded on the event loop; larger ones in a worker thread


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 when over ``max_body_mb``: unread when its Content-Length says so, else as
    soon as it proves larger."""
    limit = request.app.state.settings.max_body_mb << 20
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    """The request body as JSON, whatever its Content-Type says (curl -d sends form-encoded by default).

    Bounded by ``read_body``; a large body is decoded off the event loop, so it never stalls other clients.
    """
    raw = await read_body(request)
    try:
        return orjson.loads(raw) if len(raw) <= _DECODE_INLINE else await asyncio.to_thread(orjson.loads, raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body is not valid JSON.") from None


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The body is larger than the server's limit of {limit >> 20} MiB.", max_bytes=limit)


async def read_model(request: Request, schema: type[M]) -> M:
    """The JSON body validated against ``schema``; ``InvalidRequest`` naming the first problems otherwise."""
    try:
        return schema.model_validate(await read_json(request))
    except ValidationError as exc:
        problems = exc.errors()
    raise InvalidRequest(describe_validation(problems))


def describe_validation(problems: Any) -> str:
    """One readable sentence from pydantic's error list."""
    parts = []
    for problem in list(problems)[:3]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts) + "."

"""JSON in and out with orjson: numpy arrays are encoded directly, and bodies are parsed whatever their Content-Type."""

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from app.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class FastJSONResponse(JSONResponse):
    """JSON encoded by orjson, numpy arrays included (NaN and infinities become null)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_OPTIONS)


async def read_json(request: Request) -> Any:
    """The request body as JSON, whatever its Content-Type says (curl -d sends form-encoded by default)."""
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body is not valid JSON.") from None


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

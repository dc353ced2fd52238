"""JSON out with orjson (numpy arrays encoded directly), and pydantic's errors as one readable sentence."""

from typing import Any

import orjson
from starlette.responses import JSONResponse

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class FastJSONResponse(JSONResponse):
    """JSON encoded by orjson, numpy arrays included. Model outputs are checked finite before they get here
    (``check_finite``): orjson would write NaN and infinities as null."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_OPTIONS)


def describe_validation(problems: Any) -> str:
    """One readable sentence from pydantic's error list."""
    parts = []
    for problem in list(problems)[:3]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts) + "."

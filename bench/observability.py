"""What the request id, the metrics and the access line cost per request: the app's one middleware around a trivial
ASGI app (a 200 with a small body), against that app alone and against uvicorn's own access line, which slotserve's
replaces (prints microseconds per request, the best of 7 interleaved rounds: the figure least touched by other load).

    python bench/observability.py
"""

import asyncio
import copy
import logging
import logging.config
import os
import time

from uvicorn.config import LOGGING_CONFIG

from app.api.http_methods import HttpSemantics
from app.api.metrics import Metrics
from app.logs import configure_logging

N = 20000
ROUNDS = 7
SCOPE = {"type": "http", "method": "POST", "path": "/v1/clients/c/predict", "raw_path": b"/v1/clients/c/predict",
         "http_version": "1.1", "scheme": "http", "client": ("127.0.0.1", 5555), "query_string": b"",
         "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"python-httpx/0.28"), (b"accept", b"*/*"),
                     (b"accept-encoding", b"gzip, deflate"), (b"connection", b"keep-alive"),
                     (b"content-length", b"170"), (b"content-type", b"application/json")]}


async def trivial(scope: dict, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


async def receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict) -> None:
    return None


async def per_request_us(app: object) -> float:
    started = time.perf_counter()
    for _ in range(N):
        await app(SCOPE, receive, send)  # type: ignore[operator]
    return (time.perf_counter() - started) / N * 1e6


def uvicorn_access_line_us(devnull: object) -> float:
    """uvicorn's access line with its default logging config (what ``serve`` turns off for slotserve's own)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    logging.config.dictConfig(config)
    access = logging.getLogger("uvicorn.access")
    access.handlers[0].setStream(devnull)  # type: ignore[attr-defined]
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(N):
            access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5555", "POST", "/v1/clients/c/predict", "1.1", 200)
        best = min(best, (time.perf_counter() - started) / N * 1e6)
    return best


async def main() -> None:
    devnull = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    figures: dict[str, float] = {}
    for log_format in ("text", "json"):
        configure_logging("info", log_format, stream=devnull)  # type: ignore[arg-type]
        variants = {"the app alone": trivial,
                    "+ request id + metrics": HttpSemantics(trivial, Metrics(), access_log=False),
                    f"+ request id + metrics + access line ({log_format})": HttpSemantics(trivial, Metrics())}
        best = dict.fromkeys(variants, float("inf"))
        for _ in range(ROUNDS):
            for label, app in variants.items():
                best[label] = min(best[label], await per_request_us(app))
        figures.update(best)
    uvicorn_line = figures["uvicorn's own access line (replaced)"] = uvicorn_access_line_us(devnull)
    print(f"\n== per request, microseconds (best of {ROUNDS} rounds of {N}) ==")
    for label, us in figures.items():
        print(f"  {label:52s} {us:7.2f} us")
    added = figures["+ request id + metrics"] - figures["the app alone"]
    ours = figures["+ request id + metrics + access line (text)"] - figures["+ request id + metrics"]
    print(f"  request id + metrics add {added:.2f} us a request; slotserve's access line costs {ours:.1f} us, "
          f"uvicorn's, which it replaces, {uvicorn_line:.1f} us")


if __name__ == "__main__":
    asyncio.run(main())

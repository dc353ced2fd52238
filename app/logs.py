"""One log format for everything the process logs (the app's lines, uvicorn's, and one access line per request), as
text or as one JSON object per line, each line carrying the id of the request it was logged for.

The request id lives in a context variable set by the API's middleware for the time of a request; tasks started while
handling it (a load, a swap) inherit it, so their lines carry it too. ``RequestIdFilter`` copies it onto every record
that reaches the handler, so any formatter can print it. Nothing here imports TensorFlow or FastAPI.
"""

import itertools
import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from typing import IO, Any, Literal

import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("slotserve_request_id", default=None)
REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_CHARS = 128
# what a client's id may hold: letters, digits and the punctuation of UUIDs, trace ids and base64; nothing that could
# break a log line or a header (no spaces, quotes, control characters)
_VALID_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,%d}" % MAX_REQUEST_ID_CHARS)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# generated ids: 16 random hex digits drawn once per process, then a counter (unique within the process, apart across
# processes and restarts, and in arrival order; cheaper than a random draw per request)
_ID_PREFIX = os.urandom(8).hex().encode()
_ID_COUNTER = itertools.count(1)
access_log = logging.getLogger("slotserve.access")


def request_id_of(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request's id: the client's first ``X-Request-Id`` when it is 1-128 characters of ``A-Z a-z 0-9 . _ : / +
    = -``, else a new one (32 hex digits). Runs on every request: one pass over the raw headers."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _VALID_ID.fullmatch(value):
                return value
            break
    return b"%s%016x" % (_ID_PREFIX, next(_ID_COUNTER))


class RequestIdFilter(logging.Filter):
    """Puts the current request's id (``None`` outside any request) on every record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class _Seconds:
    """A timestamp's whole seconds formatted once per second, not once per line (a busy server logs many lines a
    second, and the access line is on the request path). Called under the handler's lock."""

    def __init__(self, pattern: str, convert: Any) -> None:
        self._pattern, self._convert = pattern, convert
        self._second, self._text = -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, time.strftime(self._pattern, self._convert(second))
        return self._text


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``: local time as logging's default (``2026-11-27 15:03:09,863``), the request id in brackets
    (``-`` outside any request)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._seconds = _Seconds("%Y-%m-%d %H:%M:%S", time.localtime)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's
        return "%s,%03d" % (self._seconds(record.created), record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``request_id``
    (``null`` outside a request); access lines add ``method``, ``path``, ``status``, ``duration_ms`` and ``client``;
    a logged exception adds ``exception`` (its traceback as one string)."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds = _Seconds("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        entry: dict[str, Any] = {
            "time": "%s.%03d+00:00" % (self._seconds(record.created), record.msecs),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": None if request_id == "-" else request_id,
        }
        access = getattr(record, "access", None)
        if access:
            entry.update(access)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, log_format: Literal["text", "json"], stream: IO[str] | None = None) -> None:
    """Send every logger's records (uvicorn's included: it is run with ``log_config=None``) through one handler on
    ``stream`` (stderr), in ``log_format``, at ``level``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # neither format prints a record's source line, thread or process: skip finding them for every record (the
    # access line makes logging part of the request path; the logging HOWTO's "Optimization" section)
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


def log_access(scope: dict, status: int, seconds: float) -> None:
    """The access line of one request (``slotserve.access`` at INFO): client, method, path (as sent, without the
    query), status and duration; in JSON, each as its own field."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else "-"
    raw = scope.get("raw_path")
    path = raw.split(b"?", 1)[0].decode("latin-1") if raw else scope["path"]
    ms = round(seconds * 1000, 3)
    access_log.info('%s "%s %s HTTP/%s" %d %.3fms', address, scope["method"], path, scope.get("http_version", "1.1"),
                    status, ms, extra={"access": {"method": scope["method"], "path": path, "status": status,
                                                  "duration_ms": ms, "client": address}})

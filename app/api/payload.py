"""Request bodies: read under the request budget, bounded in size and in time, inflated and decoded off the loop.

Every route that reads a body does it inside ``async with payload(request, client) as body``. That lease reserves
what the body costs: each chunk as it arrives (a declared length alone reserves nothing), what inflating it will
produce, and what decoding it will allocate. The lease gives everything back when the route returns. Bodies
are parsed as JSON whatever their Content-Type says (curl -d sends form-encoded by default). Big numeric arrays
never become Python objects (``lean_json``).
"""

import asyncio
import logging
import zlib
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from app.api.budget import Lease, RequestBudget
from app.api.responses import describe_validation
from app.errors import ClientDisconnected, InvalidInput, InvalidRequest, PayloadTooLarge, RequestTimeout
from app.registry import lean_json
from app.registry.decoding import DecodePool

log = logging.getLogger("slotserve.api")
M = TypeVar("M", bound=BaseModel)

OBJECT_BYTES = 48  # a Python object orjson makes (a float is 24 bytes, plus its slot in a list or dict, and slack)
NUMBER_BYTES = 8  # a parsed number, at most (int64, float64) until it is cast to the model's dtype
_INLINE = 64 << 10  # bodies this small are inflated and parsed on the event loop
_INFLATE_STEP = 8 << 20  # inflated per worker-thread call, each step reserved before it is produced
_MAX_RATIO = 1032  # deflate's largest expansion
_MAX_LENGTH_DIGITS = 19  # a Content-Length of more digits is over any limit (and over Python's int() limit)


class Payload:
    """One request's body, read once, under its lease."""

    def __init__(self, request: Request, lease: Lease) -> None:
        self.request = request
        self.lease = lease
        settings = request.app.state.settings
        self.limit = settings.max_body_mb << 20
        self.timeout_s = settings.body_timeout_s
        self._raw: bytes | bytearray | None = None

    @property
    def pool(self) -> DecodePool:
        """The registry's pool for CPU-heavy request work (the routes that read bodies depend on the registry)."""
        return self.request.app.state.registry.decoding

    async def raw(self) -> bytes | bytearray:
        """The body (inflated if it was sent gzip- or deflate-encoded), at most ``max_body_mb`` either way."""
        if self._raw is None:
            body = await self._read()
            encoding = self.request.headers.get("content-encoding", "").strip().lower()
            self._raw = body if encoding in ("", "identity") else await self._inflate(body, encoding)
        return self._raw

    async def json(self) -> Any:
        """The body as JSON; its big numeric arrays as ``NumericText`` (see ``lean_json``)."""
        return await self.decode(await self.raw())

    async def decode(self, raw: bytes | bytearray) -> Any:
        """``raw`` as JSON, reserving what decoding it allocates first; small bodies on the event loop."""
        try:
            if len(raw) <= _INLINE:
                await self.lease.reserve(parse_cost(raw))
                lean_json.check_integers(raw)
                return orjson.loads(raw)
            document = await self.pool.run(lean_json.prepare, raw)
            if document is not None:
                await self.lease.reserve(NUMBER_BYTES * document.numbers)
                return document.value
            await self.lease.reserve(await self.pool.run(parse_cost, raw))
            await self.pool.run(lean_json.check_integers, raw)
            return await self.pool.run(orjson.loads, raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest("The body is not valid JSON.") from None
        except lean_json.HugeInteger as exc:
            raise InvalidInput(f"{exc}; send such values in binary (V2) or as strings of a string model.") from None

    async def model(self, schema: type[M]) -> M:
        """The JSON body validated against ``schema``; ``InvalidRequest`` naming the first problems otherwise."""
        try:
            return schema.model_validate(await self.json())
        except ValidationError as exc:
            problems = exc.errors()
        raise InvalidRequest(describe_validation(problems))

    async def _read(self) -> bytes | bytearray:
        """The raw body: 413 unread when its Content-Length is over the limit, else as soon as it proves larger;
        408 when it has not all arrived within ``body_timeout_s``."""
        declared = self.request.headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()) or len(declared) > _MAX_LENGTH_DIGITS:
                raise InvalidRequest("Content-Length must be a number of bytes.")
            if int(declared) > self.limit:
                raise too_large(self.limit)
        # bytes are reserved and kept as they arrive, never on a declared length alone: a client that declares
        # 64 MiB and sends nothing holds nothing (a small declared body is reserved at once: it costs nothing)
        body = bytearray()
        try:
            async with asyncio.timeout(self.timeout_s):
                if declared is not None and int(declared) <= _INLINE:
                    await self.lease.reserve(int(declared))
                    return await self.request.body()
                async for chunk in self.request.stream():
                    if len(body) + len(chunk) > self.limit:
                        raise too_large(self.limit)
                    await self.lease.reserve(len(chunk))
                    body += chunk
        except TimeoutError:
            raise RequestTimeout(f"The body did not arrive within {self.timeout_s:g} s.") from None
        except ClientDisconnect:
            self.request.app.state.stats.client_disconnects += 1
            log.debug("client disconnected before its body arrived: %s %s", self.request.method,
                      self.request.url.path)
            raise ClientDisconnected("The client went away before its body arrived.") from None
        return body

    async def _inflate(self, body: bytes | bytearray, encoding: str) -> bytes:
        """Undo gzip or deflate (tritonclient's ``request_compression_algorithm``): bounded, off the event loop,
        and only a complete stream (its end and checksum checked, nothing after it)."""
        if encoding not in ("gzip", "deflate"):
            raise InvalidRequest("The request's Content-Encoding is not supported; use gzip, deflate or none.")
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS)
        pieces, size, pending = [], 0, body
        while True:
            # deflate cannot expand data more than ~1032 times: reserve no more than the rest could become
            step = min(_INFLATE_STEP, self.limit + 1 - size, _MAX_RATIO * len(pending) + 1024)
            await self.lease.reserve(step)
            try:
                piece = (inflater.decompress(pending, step) if len(pending) <= _INLINE
                         else await self.pool.run(inflater.decompress, pending, step))
            except zlib.error:
                raise InvalidRequest(f"The body is not valid {encoding} data.") from None
            pieces.append(piece)
            size += len(piece)
            if size > self.limit:
                raise too_large(self.limit)
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
            if not pending:
                raise InvalidRequest(f"The body's {encoding} stream is cut short.")
        if inflater.unused_data:
            raise InvalidRequest(f"The body has data after the end of its {encoding} stream.")
        return b"".join(pieces)


class payload:  # noqa: N801 - used as ``async with payload(request, client) as body``, like a function
    """The body of a request acting for ``client``, read under a lease of the app's request budget."""

    def __init__(self, request: Request, client: str) -> None:
        budget: RequestBudget = request.app.state.budget
        self._lease = budget.lease(client)
        self._request = request

    async def __aenter__(self) -> Payload:
        return Payload(self._request, await self._lease.__aenter__())

    async def __aexit__(self, *exc: object) -> None:
        await self._lease.__aexit__(*exc)


def parse_cost(raw: bytes | bytearray) -> int:
    """What ``orjson.loads(raw)`` allocates, at most: the text again (strings) and one Python object per value,
    counted by its separators and openers (``bytes.count`` runs at memory speed)."""
    values = raw.count(b",") + raw.count(b"[") + raw.count(b"{") + 1
    return len(raw) + OBJECT_BYTES * values


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The body is larger than the server's limit of {limit >> 20} MiB.", max_bytes=limit)

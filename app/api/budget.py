"""A process-wide budget for requests in flight: their bodies and what decoding them will allocate.

Every request that carries a body takes a ``Lease`` for its client and reserves bytes on it before reading the
body (its declared length, or chunk by chunk) and again before decoding it (the estimate of what decoding will
allocate). A reservation that does not fit waits up to ``wait_s`` for others to finish, then fails with
``429 too_many_requests`` and ``Retry-After``. Two per-client limits keep one tenant from taking the whole budget:
its share of the bytes, and its number of requests in flight. Everything runs on the event loop, so no lock is
needed.
"""

import asyncio
from collections import defaultdict
from collections.abc import Callable

from app.errors import PayloadTooLarge, TooManyRequests


class RequestBudget:
    """Bytes in flight, in total and per client, and requests in flight per client."""

    def __init__(self, total_bytes: int, client_bytes: int, client_requests: int, wait_s: float) -> None:
        self.total_bytes = total_bytes
        self.client_bytes = min(client_bytes, total_bytes)
        self.client_requests = client_requests
        self.wait_s = wait_s
        self.used = 0
        self._by_client: defaultdict[str, int] = defaultdict(int)
        self._requests: defaultdict[str, int] = defaultdict(int)
        self._released: asyncio.Future | None = None  # resolved at the next give-back, for whoever waits
        self.refused = 0  # 429s answered since start

    def lease(self, client: str) -> "Lease":
        """A lease for one request of ``client`` (``async with``): everything reserved on it is given back when the
        block ends."""
        return Lease(self, client)

    def in_use(self, client: str) -> int:
        """Bytes ``client``'s requests hold now."""
        return self._by_client.get(client, 0)

    @property
    def requests(self) -> int:
        """Requests with a body in flight now, all clients together."""
        return sum(self._requests.values())

    async def _enter(self, client: str) -> None:
        if self._requests[client] >= self.client_requests:  # the fast path (fits) costs no closure, no string
            await self._wait_for(lambda: self._requests[client] < self.client_requests,
                                 f"Client '{client}' has {self.client_requests} requests in flight already")
        self._requests[client] += 1

    def _exit(self, client: str, held: int) -> None:
        self._requests[client] -= 1
        self._give_back(client, held)

    async def _reserve(self, client: str, nbytes: int, held: int) -> None:
        if held + nbytes > self.client_bytes:  # this request alone could never fit, however long it waited
            raise PayloadTooLarge(f"This request would hold about {held + nbytes} bytes in memory; the server "
                                  f"allows one client {self.client_bytes} bytes in flight.",
                                  max_bytes=self.client_bytes)
        if self.used + nbytes > self.total_bytes or self._by_client[client] + nbytes > self.client_bytes:
            await self._wait_for(lambda: self.used + nbytes <= self.total_bytes
                                 and self._by_client[client] + nbytes <= self.client_bytes,
                                 "The server's memory for requests in flight is spent")
        self.used += nbytes
        self._by_client[client] += nbytes

    def _give_back(self, client: str, nbytes: int) -> None:
        if nbytes:
            self.used -= nbytes
            self._by_client[client] -= nbytes
        if not self._by_client[client] and not self._requests[client]:
            self._by_client.pop(client, None)
            self._requests.pop(client, None)
        if self._released is not None:
            if not self._released.done():
                self._released.set_result(None)
            self._released = None

    async def _wait_for(self, fits: Callable[[], bool], why: str) -> None:
        """Return once ``fits()``, re-checked at every give-back; ``TooManyRequests`` after ``wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while not fits():
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.refused += 1
                raise TooManyRequests(f"{why}; retry shortly.")
            if self._released is None:
                self._released = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._released), remaining)
            except TimeoutError:
                pass


class Lease:
    """One request's reservations (an async context manager: entering counts the request, leaving gives all back)."""

    def __init__(self, budget: RequestBudget, client: str) -> None:
        self.budget = budget
        self.client = client
        self.held = 0

    async def __aenter__(self) -> "Lease":
        await self.budget._enter(self.client)  # noqa: SLF001 - the lease is the budget's own handle
        return self

    async def __aexit__(self, *_: object) -> None:
        held, self.held = self.held, 0
        self.budget._exit(self.client, held)  # noqa: SLF001

    async def reserve(self, nbytes: int) -> None:
        """Hold ``nbytes`` more until the request ends (waits, then ``TooManyRequests``)."""
        if nbytes > 0:
            await self.budget._reserve(self.client, nbytes, self.held)  # noqa: SLF001 - the budget's own handle
            self.held += nbytes

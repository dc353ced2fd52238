"""Loads, swaps and unloads run as tasks of their own, which no caller can cancel halfway.

A caller that goes away (a cancelled request, a client timeout, a shutdown's deadline) stops waiting; the operation
finishes, records what it did, and leaves its slot in a legal phase. ``idle()`` waits for all of them (a shutdown,
and the tests that cancel callers at every step).
"""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Operations:
    """The operations in progress."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    async def run(self, operation: Awaitable[T]) -> T:
        """Run ``operation`` as a task, and wait for it; cancelling the caller does not cancel the task."""
        return await asyncio.shield(self.start(operation))

    def start(self, operation: Awaitable[T]) -> "asyncio.Future[T]":
        """Run ``operation`` as a task without waiting for it (its failure is its own to record)."""
        task = asyncio.ensure_future(operation)
        self._tasks.add(task)
        task.add_done_callback(_settle)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def idle(self, timeout_s: float | None = None) -> bool:
        """Wait until no operation is in progress (at most ``timeout_s``); whether none is."""
        while self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=timeout_s)
            if pending:
                return False
        return True


def _settle(task: asyncio.Task) -> None:
    """Retrieve an operation's exception when its caller went away, so it is not reported as never retrieved."""
    if not task.cancelled():
        task.exception()

"""Where big request bodies are parsed and converted: a small pool of threads at lower CPU priority.

Parsing a 64 MiB body takes about a second of CPU. On the event loop that would stall every client; on Python's
default thread pool, thirty such bodies at once would take every core and every GIL switch from the small requests
of other clients. Here they queue behind each other on a few niced threads: a flood of big requests gets slower,
the others do not.
"""

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
DECODE_NICE = 10  # below the event loop and the slots' inference threads (0), below model loads (5)


def lower_priority(nice: int) -> Callable[[], None]:
    """A thread initializer lowering the calling thread's CPU priority by ``nice`` (Linux: per thread)."""

    def lower() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except (AttributeError, OSError):  # not Linux, or not allowed: the thread runs at normal priority
            pass

    return lower


class DecodePool:
    """A few low-priority threads for CPU-heavy request work (parsing, converting, inflating)."""

    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="decode",
                                            initializer=lower_priority(DECODE_NICE))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def default_workers() -> int:
    """Half the cores, at least one: the other half stays with inference and the event loop. (Bodies queue here
    in arrival order; a 64 MiB one takes about a second, and no body's scan is slower than linear.)"""
    return max(1, (os.cpu_count() or 2) // 2)

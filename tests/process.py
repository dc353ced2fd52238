"""A real ``slotserve`` process for end-to-end tests: started on a free loopback port, stopped and reaped after."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import httpx

SLOTSERVE = [sys.executable, "-m", "app.cli"]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``slotserve ARGS`` to completion, output captured as text."""
    return subprocess.run([*SLOTSERVE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Running:
    """A started server: its base URL, its process, and (after it stopped) everything it printed."""

    url: str
    proc: subprocess.Popen
    log: IO[str]
    output: str = ""

    def read_output(self) -> str:
        """Everything the server printed so far."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


@contextmanager
def serving(*args: str, env: dict[str, str] | None = None, ready_path: str = "/healthz") -> Iterator[Running]:
    """``slotserve serve ARGS --port <free>`` until the block ends (then SIGTERM); waits for ``ready_path``."""
    port = free_port()
    # output goes to a file, not a pipe: a pipe nobody reads until the end fills up and stalls a chatty server
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([*SLOTSERVE, "serve", *args, "--port", str(port)],
                                env={**os.environ, "SLOTSERVE_SLOTS": "2", "SLOTSERVE_SLOT_MEMORY_MB": "64",
                                     **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        running = Running(f"http://127.0.0.1:{port}", proc, log=log)
        try:
            _wait(running, ready_path)
            yield running
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=60)
            running.output = running.read_output()


def _wait(running: Running, path: str) -> None:
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=running.url, timeout=5) as http:
        while time.monotonic() < deadline:
            if running.proc.poll() is not None:
                raise AssertionError(f"the server exited: {running.read_output()}")
            try:
                if http.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise AssertionError("the server did not become ready")

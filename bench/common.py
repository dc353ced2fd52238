"""Shared pieces of the benchmarks: a slotserve process, RSS readings, percentiles. Imports no TensorFlow."""

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (2^20 bytes), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_models(directory: Path) -> None:
    """The demo models, written by the CLI in a child process (this process stays free of TensorFlow)."""
    subprocess.run([sys.executable, "-m", "app.cli", "demo-models", str(directory)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Service:
    """A child process serving HTTP on a free loopback port; ready once ``ready_path`` answers 200."""

    def __init__(self, args: list[str], port: int, ready_path: str, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._args = args
        self._ready_path = ready_path
        self._env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        self._proc = subprocess.Popen(self._args, env=self._env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
            for _ in range(6000):
                if self._proc.poll() is not None:
                    raise RuntimeError(f"{self._args[2]} exited with {self._proc.returncode}")
                try:
                    if (await http.get(self._ready_path)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.01)
        raise RuntimeError(f"{self._args} did not become ready")

    async def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            await asyncio.to_thread(self._proc.wait, 60)

    async def __aenter__(self) -> "Service":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Server(Service):
    """``slotserve serve`` on CPU slots."""

    def __init__(self, models: Path, slots: int, slot_mb: int, extra_env: dict[str, str] | None = None) -> None:
        port = free_port()
        state = Path(tempfile.mkdtemp(prefix="slotserve-bench-")) / "state.db"  # no keys: open, on loopback
        args = [sys.executable, "-m", "app.cli", "serve", "--model-dir", str(models), "--port", str(port),
                "--slots", str(slots), "--slot-memory-mb", str(slot_mb), "--device", "cpu", "--state", str(state)]
        super().__init__(args, port, "/readyz", {"SLOTSERVE_LOG_LEVEL": "warning", **(extra_env or {})})


def write_big_model(path: Path, hidden: int = 4096) -> None:
    """A 784 -> hidden -> hidden -> 10 MLP (~20M parameters at 4096), written by a child process."""
    code = (
        "import sys, app, keras; h = int(sys.argv[2]); x = keras.Input((784,), name='x');"
        "y = keras.layers.Dense(10)(keras.layers.Dense(h)(keras.layers.Dense(h)(x)));"
        "keras.Model(x, y).save(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(hidden)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

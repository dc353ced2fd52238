"""The command line end to end: a real uvicorn process, and clear one-line refusals."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest


SLOTSERVE = [sys.executable, "-m", "app.cli"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*SLOTSERVE, *args], capture_output=True, text=True, timeout=timeout)


def test_an_impossible_plan_is_one_line_and_a_non_zero_exit(model_dir: Path, refs) -> None:
    done = run("serve", "--model-dir", str(model_dir), "--slots", "4", "--slot-memory-mb", str(10**9))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("slotserve: error: cannot plan slots:") and "does not fit" in last


@pytest.mark.parametrize("args,fragment", [
    (["--model-dir", "/nonexistent/models"], "does not exist"),
    (["--slots", "0"], "invalid setting"),
])
def test_bad_settings_are_one_line(args: list[str], fragment: str) -> None:
    done = run("serve", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert fragment in done.stderr.strip().splitlines()[-1]


def test_serve_demo_models_over_real_http(tmp_path: Path) -> None:
    written = run("demo-models", str(tmp_path))
    assert written.returncode == 0, written.stderr
    assert {p.stem for p in tmp_path.glob("*.keras")} >= {"tiny", "medium", "pair"}
    port = _free_port()
    env = {**os.environ, "SLOTSERVE_SLOTS": "2", "SLOTSERVE_SLOT_MEMORY_MB": "64"}
    proc = subprocess.Popen([*SLOTSERVE, "serve", "--model-dir", str(tmp_path), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _wait_ready(http, proc)
            slots = http.get("/v1/slots").json()["slots"]
            assert len(slots) == 2 and {s["memory"]["limit_bytes"] for s in slots} == {64 * 2**20}
            assert http.put("/v1/clients/alice/model", json={"model": "medium"}).status_code == 200
            got = http.post("/v1/clients/alice/predict", json={"instances": [[0.5] * 784]}).json()
            assert np.asarray(got["predictions"]).shape == (1, 10)
            unloaded = http.delete("/v1/clients/alice/model").json()
            assert unloaded["freed_bytes"] > 7_000_000 and unloaded["memory"]["in_use_bytes"] == 0
    finally:
        proc.terminate()
        log = proc.communicate(timeout=60)[0]
    assert "load client=alice model=medium slot=0" in log
    assert "unload client=alice model=medium slot=0" in log


def _wait_ready(http: httpx.Client, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            if http.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

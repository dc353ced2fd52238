"""The docker/ helpers that run inside the image, checked on the host (``make docker-test`` runs the image itself).

The image's HEALTHCHECK script against a real HTTP server, the requirements each variant installs, every
``SLOTSERVE_*`` name the image and compose file set being a real setting, and the Makefile/CI wiring.
"""

import http.server
import importlib.util
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"


def _requirements_module():
    spec = importlib.util.spec_from_file_location("docker_requirements", DOCKER / "requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def _healthcheck(port: int, host: str = "0.0.0.0") -> subprocess.CompletedProcess:
    env = {**os.environ, "SLOTSERVE_HOST": host, "SLOTSERVE_PORT": str(port)}
    return subprocess.run([sys.executable, str(DOCKER / "healthcheck.py")], env=env, capture_output=True, text=True,
                          timeout=30)


def test_healthcheck_passes_on_200_from_the_wildcard_address(health_server) -> None:
    port, _ = health_server
    assert _healthcheck(port).returncode == 0
    assert _healthcheck(port, host="127.0.0.1").returncode == 0


def test_healthcheck_fails_on_an_error_status_and_on_no_server(health_server) -> None:
    port, handler = health_server
    handler.status = 503
    failed = _healthcheck(port)
    assert failed.returncode == 1 and "/healthz" in failed.stderr
    handler.status = 200
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        free = unused.getsockname()[1]
    assert _healthcheck(free).returncode == 1


def test_the_cpu_variant_swaps_tensorflow_for_tensorflow_cpu_at_the_same_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    cpu = _requirements_module().requirements(pyproject, "cpu")
    pinned = next(spec for spec in pyproject["project"]["dependencies"] if spec.startswith("tensorflow"))
    assert pinned.replace("tensorflow", "tensorflow-cpu", 1) in cpu
    assert not any(re.match(r"tensorflow(?!-cpu)", spec) for spec in cpu)
    assert len(cpu) == len(pyproject["project"]["dependencies"])


def test_the_gpu_variant_adds_the_cuda_libraries() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    gpu = _requirements_module().requirements(pyproject, "gpu")
    assert any(spec.startswith("tensorflow[and-cuda]") for spec in gpu)
    assert set(pyproject["project"]["dependencies"]) <= set(gpu)
    with pytest.raises(ValueError):
        _requirements_module().requirements(pyproject, "tpu")


@pytest.mark.parametrize("name", ["Dockerfile", "compose.yaml"])
def test_every_slotserve_variable_the_image_sets_is_a_setting(name: str) -> None:
    used = set(re.findall(r"\bSLOTSERVE_([A-Z][A-Z0-9_]*)\b", (DOCKER / name).read_text()))
    assert used, name
    assert {n.lower() for n in used} <= set(Settings.model_fields), name


def test_make_docker_test_is_wired_into_ci() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\.PHONY:.*\bdocker-test\b", makefile, re.M)
    assert re.search(r"^docker-test:.*\n\t.*docker/test\.py", makefile, re.M)
    steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert steps.index("make docker-test") > steps.index("make test")

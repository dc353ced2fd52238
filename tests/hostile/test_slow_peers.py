"""Slow peers against a real server process: trickled headers are cut off, a trickled body cannot hold shutdown
past its bound, and a client that vanishes mid-body is not an error."""

import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.process import serving

ENV = {"SLOTSERVE_HEADER_TIMEOUT_S": "1", "SLOTSERVE_BODY_TIMEOUT_S": "120", "SLOTSERVE_SHUTDOWN_TIMEOUT_S": "2"}


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


@pytest.fixture
def server(model_dir: Path, refs, tmp_path: Path):
    with serving("--model-dir", str(model_dir), "--state", str(tmp_path / "s.db"), env=ENV) as running:
        yield running


def test_headers_that_trickle_are_cut_off(server) -> None:
    with connect(server.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the server closed it (recv blocks until then; the socket timeout is 30 s)
        assert time.monotonic() - started < 30
    with connect(server.url) as sock:  # a prompt client is served as usual on a new connection
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")


def test_a_body_trickling_after_its_answer_does_not_hold_the_connection(server) -> None:
    with connect(server.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\nx")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            answer += sock.recv(1024)
        assert answer.startswith(b"HTTP/1.1 200")
        assert sock.recv(1024) == b""  # closed after the answer, not kept open for the gigabyte to trickle


def test_a_client_gone_mid_body_is_not_an_error(server) -> None:
    with connect(server.url) as sock:
        sock.sendall(b"PUT /v1/clients/a/model HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n{")
    with connect(server.url) as sock:  # the server carries on
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0
    output = server.read_output()
    errors = [line for line in output.splitlines() if "ERROR" in line and "cuInit" not in line]  # TF's CPU notice
    assert errors == [] and "Traceback" not in output and "unexpected" not in output


def test_a_trickled_body_cannot_hold_shutdown(server) -> None:
    sent = {"bytes": 0, "closed": False}

    def trickle() -> None:
        with connect(server.url) as sock:
            sock.sendall(b"PUT /v1/clients/a/model HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 600\r\n\r\n")
            try:
                for _ in range(600):  # 600 bytes at 5 a second: two minutes, if nobody stops it
                    sock.sendall(b" ")
                    sent["bytes"] += 1
                    time.sleep(0.2)
            except OSError:
                sent["closed"] = True

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    while sent["bytes"] < 5:
        time.sleep(0.05)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0  # within the 2 s bound plus start-up of the exit, not the two minutes
    assert sent["bytes"] < 600
    output = server.read_output()
    assert "timeout graceful shutdown exceeded" in output and "cancelled at shutdown: PUT" in output
    assert "Traceback" not in output

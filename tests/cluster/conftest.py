"""``deploy/local/cluster.sh up 3`` as a user runs it, on free ports and a temporary run dir, ``down`` after.

Real processes only: Debian's PostgreSQL and nginx (``make test`` installs them), three ``slotserve serve`` replicas
in open mode (no keys, loopback). The run dir is under /tmp and world-readable, not in pytest's private temp dir:
as root, PostgreSQL runs as the ``postgres`` user, who must reach its data dir.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local" / "cluster.sh"
REPLICAS = 3
# every replica can hold every client (a survivor takes over a dead replica's clients); small slots, small models.
# Ownership is checked every second so stale copies go quickly.
ENV = {"CLUSTER_SLOTS": "9", "SLOTSERVE_SLOT_MEMORY_MB": "64", "SLOTSERVE_DEVICE": "cpu",
       "SLOTSERVE_OWNERSHIP_CHECK_S": "1"}


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports (the replicas listen on base .. base + N - 1)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        if all(_bindable(base + i) for i in range(count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports")


@dataclass
class Cluster:
    """A running local cluster: nginx's URL, the replicas' own URLs, the shared state's URL, and the script."""

    run: Path
    env: dict[str, str]
    url: str
    base_port: int
    state: str

    def sh(self, *args: str, timeout: float = 240) -> str:
        """``cluster.sh ARGS`` to completion (it fails the test with its output when it fails); its stdout."""
        done = subprocess.run([str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"cluster.sh {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def replica_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.base_port + i - 1}"

    def pid(self, i: int) -> int:
        return int((self.run / f"replica-{i}.pid").read_text())

    def kill_9(self, i: int) -> None:
        """SIGKILL replica ``i`` (its pid file's process) and wait until its port refuses connections: its sockets
        are closed only once its last thread is gone, which may be after its main thread shows as a zombie."""
        os.kill(self.pid(i), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.base_port + i - 1), timeout=1).close()
            except ConnectionRefusedError:
                return
            time.sleep(0.02)
        raise AssertionError(f"replica-{i} still accepts connections 30 s after SIGKILL")

    def store(self) -> dict[str, dict]:
        """What the shared store says, client -> its row (replica, epoch, model...): ``slotserve state show``."""
        shown = subprocess.run([sys.executable, "-m", "app.cli", "state", "show", "--json", "--state", self.state],
                               capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert shown.returncode == 0, shown.stderr
        return {row["client"]: row for row in json.loads(shown.stdout)}

    def held(self, http: httpx.Client, i: int) -> set[str]:
        """The clients replica ``i`` has in its slots (its own /v1/slots, not through nginx)."""
        reply = http.get(f"{self.replica_url(i)}/v1/slots")
        assert reply.status_code == 200 and reply.json()["replica"] == f"replica-{i}", reply.text
        return {slot["client"] for slot in reply.json()["slots"] if slot["client"] is not None}

    def logs(self) -> str:
        """The end of every replica's log and nginx's error log, for a failure's message."""
        tails = []
        for log in sorted(self.run.glob("replica-*.log")) + [self.run / "nginx" / "error.log"]:
            if log.exists():
                tails.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-25:]))
        return "\n".join(tails)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    run = Path(tempfile.mkdtemp(prefix="slotserve-cluster-"))
    run.chmod(0o755)
    base = free_ports(REPLICAS + 2)  # the replicas', then nginx's and PostgreSQL's: never the same port twice
    port, pg_port = base + REPLICAS, base + REPLICAS + 1
    env = {**os.environ, **ENV, "CLUSTER_RUN": str(run / "run"), "CLUSTER_PORT": str(port),
           "CLUSTER_BASE_PORT": str(base), "CLUSTER_PG_PORT": str(pg_port), "MODELS": str(run / "models")}
    if (beside := Path(sys.executable).with_name("slotserve")).exists():
        env["SLOTSERVE"] = str(beside)  # the slotserve of the interpreter running the tests
    started = Cluster(run / "run", env, f"http://127.0.0.1:{port}", base, state="")
    try:
        started.sh("up", str(REPLICAS))
        settings = (started.run / "cluster.env").read_text().splitlines()
        started.state = next(line.partition("=")[2] for line in settings if line.startswith("STATE_URL="))
        yield started
        print(started.logs())  # shown when the test failed
    finally:
        try:
            started.sh("down")
        finally:
            shutil.rmtree(run, ignore_errors=True)

"""A real PostgreSQL server for the tests: one per session (deploy/local/postgres.sh), a fresh database per test.

The server runs from Debian's binaries on a free loopback port; each test gets its own database, dropped after, so
tests never see each other's keys or schema.
"""

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.process import free_port

SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "local" / "postgres.sh"


@dataclass
class PostgresServer:
    """A running throwaway cluster: ``url`` is its ``slotserve`` database; ``stop``/``start`` take it away and
    bring it back on the same port with the same data (for tests of an outage)."""

    dir: Path
    port: int
    url: str = ""

    def start(self) -> None:
        done = subprocess.run([str(SCRIPT), "start", str(self.dir), str(self.port)], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"deploy/local/postgres.sh start failed: {done.stderr.strip()}")
        self.url = done.stdout.strip()

    def stop(self) -> None:
        done = subprocess.run([str(SCRIPT), "stop", str(self.dir)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"deploy/local/postgres.sh stop failed: {done.stderr.strip()}")

    def database_url(self, name: str) -> str:
        return self.url.rsplit("/", 1)[0] + "/" + name


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a cluster for the block, then stop it and delete its files."""
    # directly under the temp dir, not pytest's tmp_path: as root the cluster runs as the `postgres` user, which
    # cannot pass pytest's private (0700, root's) parent directories
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="slotserve-pg-")), free_port())
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.dir, ignore_errors=True)


@contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """A new, empty database on ``server`` for the block (its URL), dropped after even if a connection lingers."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield server.database_url(name)
    finally:
        with psycopg.connect(server.url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

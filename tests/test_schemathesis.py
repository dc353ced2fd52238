"""Schemathesis, as a user would run it, against a live server's own OpenAPI: every check, a bounded run.

The server has an admin key, as in production: the authentication checks (missing or wrong key refused) run too.
tests/schemathesis.toml says which statuses count as accepting schema-valid data where the schema cannot know a
model's tensor shapes, and why.
"""

import subprocess
import sys
from pathlib import Path

from tests.process import run, serving

CONFIG = Path(__file__).parent / "schemathesis.toml"
ADMIN_KEY = "schemathesis-admin-key-" + "k" * 32


def test_the_api_keeps_its_openapi_promises(tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert run("demo-models", str(models)).returncode == 0
    with serving("--model-dir", str(models), "--state", str(tmp_path / "s.db"), ready_path="/readyz",
                 env={"SLOTSERVE_ADMIN_KEY": ADMIN_KEY,  # room for every client the run invents: no 503 for lack
                      "SLOTSERVE_SLOTS": "64", "SLOTSERVE_SLOT_MEMORY_MB": "16"}) as server:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(CONFIG), "run",
             f"{server.url}/openapi.json", "--checks", "all", "--max-examples", "25", "--seed", "1",
             "--generation-database", "none", "--no-color", "--header", f"Authorization: Bearer {ADMIN_KEY}"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:]
    assert "Tested: 27" in done.stdout or "Tested:" in done.stdout
    assert "Traceback" not in server.output and "Exception in ASGI" not in server.output

"""The command line end to end: a real uvicorn process, and clear one-line refusals."""

from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.process import run, serving


def test_an_impossible_plan_is_one_line_and_a_non_zero_exit(model_dir: Path, refs, tmp_path: Path) -> None:
    done = run("serve", "--model-dir", str(model_dir), "--slots", "4", "--slot-memory-mb", str(10**9),
               "--state", str(tmp_path / "state.db"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("slotserve: error: cannot plan slots:") and "does not fit" in last


@pytest.mark.parametrize("args,fragment", [
    (["--model-dir", "/nonexistent/models"], "does not exist"),
    (["--slots", "0"], "invalid setting"),
    (["--state", "/nonexistent/dir/state.db"], "cannot open the state file"),
])
def test_bad_settings_are_one_line(model_dir: Path, args: list[str], fragment: str) -> None:
    done = run("serve", "--model-dir", str(model_dir), *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert fragment in done.stderr.strip().splitlines()[-1]


def test_serve_demo_models_over_real_http(tmp_path: Path) -> None:
    models = tmp_path / "models"
    written = run("demo-models", str(models))
    assert written.returncode == 0, written.stderr
    assert {p.stem for p in models.glob("*.keras")} >= {"tiny", "medium", "pair"}
    with serving("--model-dir", str(models), "--state", str(tmp_path / "state.db"), ready_path="/readyz") as server:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            slots = http.get("/v1/slots").json()["slots"]
            assert len(slots) == 2 and {s["memory"]["limit_bytes"] for s in slots} == {64 * 2**20}
            assert http.put("/v1/clients/alice/model", json={"model": "medium"}).status_code == 200
            got = http.post("/v1/clients/alice/predict", json={"instances": [[0.5] * 784]}).json()
            assert np.asarray(got["predictions"]).shape == (1, 10)
            unloaded = http.delete("/v1/clients/alice/model").json()
            assert unloaded["freed_bytes"] > 7_000_000 and unloaded["memory"]["in_use_bytes"] == 0
    assert "load client=alice model=medium slot=0" in server.output
    assert "unload client=alice model=medium slot=0" in server.output
    # open mode on loopback says so, in one warning line
    assert sum("serving WITHOUT authentication" in line for line in server.output.splitlines()) == 1

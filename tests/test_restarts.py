"""Assignments survive restarts: real ``slotserve serve`` processes, killed with SIGKILL and stopped with SIGTERM.

One story, in order (each start of a server costs seconds, so the steps share them):
1. three clients load (one with batching overrides) and predict; the server is killed with ``kill -9``;
2. one client's model file is deleted; the next start, on the same state file, answers ``/readyz`` 503 until the
   others are back: same models, same overrides, identical predictions; the deleted one is ``failed`` with its
   reason (and ``DELETE`` forgets it). A replace swap is then killed with ``kill -9`` while it runs;
3. the next start finds that client with its old model or its new one, never none; SIGTERM exits 0 and keeps the
   assignments (``slotserve state show``);
4. ``--forget`` starts empty, and ``slotserve state clear`` says so too.
"""

import json
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from tests.helpers import TOLERANCE
from tests.models import Reference
from tests.process import Running, run, serving

MODELS = ("tiny", "four_mb", "six_mb", "nine_mb", "nine_mb_b")
ENV = {"SLOTSERVE_SLOTS": "3", "SLOTSERVE_SLOT_MEMORY_MB": "16", "SLOTSERVE_DEVICE": "cpu"}


def _predict(http: httpx.Client, client: str, ref: Reference) -> np.ndarray:
    reply = http.post(f"/v1/clients/{client}/predict", json={"instances": ref.inputs["x"].tolist()})
    assert reply.status_code == 200, reply.text
    return np.asarray(reply.json()["predictions"])


def _kill(server: Running) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=30)


def _wait_ready(server: Running, http: httpx.Client) -> list[int]:
    """Poll /readyz until 200; the statuses seen on the way."""
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = http.get("/readyz").status_code
        seen.append(status)
        if status == 200:
            return seen
        time.sleep(0.01)
    raise AssertionError(f"never ready: {server.read_output()}")


def _kill_mid_replace(server: Running, http: httpx.Client) -> bool:
    """Swap client a between two models that cannot share its slot, and kill -9 while a swap is in progress;
    whether the kill landed inside one (seen as ``replacing``)."""
    for attempt in range(40):
        new = ("nine_mb_b", "nine_mb")[attempt % 2]
        thread = threading.Thread(target=lambda m=new: _quiet_put(server.url, m), daemon=True)
        thread.start()
        while thread.is_alive():
            if http.get("/v1/clients/a").json().get("state") == "replacing":
                _kill(server)
                return True
        thread.join()
    _kill(server)
    return False


def _quiet_put(url: str, model: str) -> None:
    try:
        httpx.put(f"{url}/v1/clients/a/model", json={"model": model}, timeout=60)
    except httpx.TransportError:
        pass  # killed under it


def test_assignments_survive_kill_9_deleted_models_and_sigterm(tmp_path: Path, refs: dict[str, Reference]) -> None:
    store, state = tmp_path / "models", tmp_path / "state.db"
    store.mkdir()
    for name in MODELS:
        shutil.copy(refs[name].path, store / f"{name}.keras")
    args = ("--model-dir", str(store), "--state", str(state), "--no-auth")

    # 1. three clients, one with batching overrides; then kill -9
    with serving(*args, env=ENV) as first, httpx.Client(base_url=first.url, timeout=60) as http:
        for client, model, extra in (("a", "nine_mb", {}), ("b", "tiny", {}),
                                     ("c", "four_mb", {"max_batch_size": 7, "max_delay_us": 1500})):
            assert http.put(f"/v1/clients/{client}/model", json={"model": model, **extra}).status_code == 200
        before = {c: _predict(http, c, refs[m]) for c, m in (("a", "nine_mb"), ("b", "tiny"), ("c", "four_mb"))}
        batching_before = http.get("/v1/clients/c").json()["batching"]
        _kill(first)

    # 2. b's model is deleted meanwhile; the others come back as they were
    (store / "tiny.keras").unlink()
    with serving(*args, env=ENV) as second, httpx.Client(base_url=second.url, timeout=60) as http:
        readiness = _wait_ready(second, http)
        for client, model in (("a", "nine_mb"), ("c", "four_mb")):
            record = http.get(f"/v1/clients/{client}").json()
            assert record["state"] == "ready" and record["model"] == model
            np.testing.assert_allclose(_predict(http, client, refs[model]), before[client], atol=TOLERANCE, rtol=0)
        assert http.get("/v1/clients/c").json()["batching"] == batching_before == {"max_batch_size": 7,
                                                                                   "max_delay_us": 1500}
        failed = http.get("/v1/clients/b")
        assert failed.status_code == 200 and failed.json()["state"] == "failed", failed.text
        assert "tiny" in failed.json()["reason"]
        refused = http.post("/v1/clients/b/predict", json={"instances": [[0.0] * 6]})
        assert refused.status_code == 404 and refused.json()["error"]["reason"] == failed.json()["reason"]
        assert http.delete("/v1/clients/b/model").status_code == 200  # forgotten
        assert http.get("/v1/clients/b").status_code == 404
        caught = _kill_mid_replace(second, http)
    print(f"readiness while restoring: {readiness[:3]}...; kill -9 landed inside a replace swap: {caught}")

    # 3. after a kill -9 mid-swap: old model or new, never none; then SIGTERM keeps the assignments
    with serving(*args, env=ENV) as third, httpx.Client(base_url=third.url, timeout=60) as http:
        _wait_ready(third, http)
        record = http.get("/v1/clients/a").json()
        assert record["state"] == "ready" and record["model"] in ("nine_mb", "nine_mb_b"), record
        np.testing.assert_allclose(_predict(http, "a", refs[record["model"]]), refs[record["model"]].outputs["y"],
                                   atol=TOLERANCE, rtol=0)
        assert http.get("/v1/clients/c").json()["model"] == "four_mb"
        third.proc.send_signal(signal.SIGTERM)
        assert third.proc.wait(timeout=60) == 0
    shown = json.loads(run("state", "show", "--json", "--state", str(state)).stdout)
    assert {r["client"]: r["model"] for r in shown} == {"a": record["model"], "c": "four_mb"}

    # 4. --forget starts empty (keys would stay); state clear has nothing left to forget
    with serving(*args, "--forget", env=ENV) as fourth, httpx.Client(base_url=fourth.url, timeout=60) as http:
        _wait_ready(fourth, http)
        assert all(slot["client"] is None for slot in http.get("/v1/slots").json()["slots"])
        assert http.get("/v1/clients/a").status_code == 404
    assert json.loads(run("state", "show", "--json", "--state", str(state)).stdout) == []
    assert "forgot 0 assignments" in run("state", "clear", "--state", str(state)).stdout

"""The HTTP half of ``make docker-test``: use a running container's API as a client would (stdlib only)."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]
READY_WITHIN_S = 300


class Failure(Exception):
    """A check failed; the message says which and why."""


def http(method: str, url: str, body: object = None, key: str | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def expect(what: str, got: tuple[int, object], status: int) -> object:
    if got[0] != status:
        raise Failure(f"{what}: expected {status}, got {got[0]} {json.dumps(got[1])[:500]}")
    return got[1]


def keras_outputs(model: Path) -> list[list[float]]:
    """What Keras itself computes for ROWS on the host, to hold the container's answers against."""
    code = ("import json, sys, numpy, keras; m = keras.saving.load_model(sys.argv[1]); "
            "print(json.dumps(numpy.asarray(m(numpy.array(json.loads(sys.argv[2]), 'float32'))).tolist()))")
    result = subprocess.run([sys.executable, "-c", code, str(model), json.dumps(ROWS)], capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        raise Failure(f"Keras on the host could not run {model.name}: {result.stderr.strip()[-1000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_predictions(got: object, want: list[list[float]]) -> None:
    rows = got.get("predictions") if isinstance(got, dict) else None
    if not rows or len(rows) != len(want) or any(len(r) != len(w) for r, w in zip(rows, want)):
        raise Failure(f"predictions of the wrong shape: {got}")
    worst = max(abs(a - b) for r, w in zip(rows, want) for a, b in zip(r, w))
    if worst > 1e-5:
        raise Failure(f"predictions differ from Keras's own by {worst}: {rows} vs {want}")


def use_api(base: str, key: str, want: list[list[float]], remembered: bool) -> None:
    """What a user does: health without a key, 401 without one elsewhere, list, load (or find remembered), predict."""
    expect("GET /healthz without a key", http("GET", f"{base}/healthz"), 200)
    expect("GET /v1/models without a key", http("GET", f"{base}/v1/models"), 401)
    names = {m["name"] for m in expect("GET /v1/models", http("GET", f"{base}/v1/models", key=key), 200)["models"]}
    if "iris" not in names:
        raise Failure(f"the mounted model store lists {sorted(names)}, not iris")
    if remembered:  # the restart: alice is put back from /state; ready once she is
        deadline = time.monotonic() + READY_WITHIN_S
        while http("GET", f"{base}/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.25)
        client = expect("GET /v1/clients/alice", http("GET", f"{base}/v1/clients/alice", key=key), 200)
        if client.get("model") != "iris":
            raise Failure(f"alice was not remembered across the restart: {client}")
    else:
        loaded = expect("PUT /v1/clients/alice/model",
                        http("PUT", f"{base}/v1/clients/alice/model", {"model": "iris"}, key), 200)
        if loaded.get("model") != "iris":
            raise Failure(f"load answered {loaded}")
    check_predictions(expect("POST /v1/clients/alice/predict", http(
        "POST", f"{base}/v1/clients/alice/predict", {"instances": ROWS}, key), 200), want)
    expect("GET /readyz", http("GET", f"{base}/readyz"), 200)

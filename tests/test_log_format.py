"""``serve --log-format json`` in a real process: every line the server logs (its own, uvicorn's, the access lines)
is one JSON object, and the lines logged for a request carry its id. TensorFlow's native (C++) start-up messages are
printed by TensorFlow itself, before and outside Python's logging: they are the only other lines."""

import json
import re
from pathlib import Path

import httpx

from tests.models import Reference
from tests.process import serving

# absl's own lines ("I0000 00:00:1795791140.824771   29458 cudart_stub.cc:31] ...") and its one preamble line
NATIVE_TF = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} \d\d:\d\d:\d\d)")
FIELDS = {"time", "level", "logger", "message", "request_id"}
ACCESS_FIELDS = FIELDS | {"method", "path", "status", "duration_ms", "client"}


def test_json_logs_are_one_object_per_line_with_request_ids(model_dir: Path, refs: dict[str, Reference],
                                                            tmp_path: Path) -> None:
    with serving("--model-dir", str(model_dir), "--state", str(tmp_path / "state.db"), "--log-format", "json",
                 ready_path="/readyz") as server, httpx.Client(base_url=server.url, timeout=60) as http:
        loaded = http.put("/v1/clients/alice/model", json={"model": "tiny"}, headers={"X-Request-Id": "json-load-1"})
        assert loaded.status_code == 200 and loaded.headers["x-request-id"] == "json-load-1"
        missing = http.get("/no-such-route")
        assert missing.status_code == 404
    entries = []
    for line in server.output.splitlines():
        if not line.strip() or NATIVE_TF.match(line):
            continue
        entry = json.loads(line)  # anything else is a log line: it must be JSON
        assert isinstance(entry, dict) and FIELDS <= set(entry), line
        entries.append(entry)

    access = [e for e in entries if e["logger"] == "slotserve.access"]
    assert set(access[0]) == ACCESS_FIELDS
    load = next(e for e in access if e["method"] == "PUT")
    assert load["request_id"] == "json-load-1" and load["path"] == "/v1/clients/alice/model"
    assert load["status"] == 200 and load["duration_ms"] > 0 and load["client"].startswith("127.0.0.1:")
    unknown = next(e for e in access if e["path"] == "/no-such-route")
    assert unknown["status"] == 404 and unknown["request_id"] == missing.headers["x-request-id"]
    registry = next(e for e in entries if e["message"].startswith("load client=alice model=tiny"))
    assert registry["request_id"] == "json-load-1" and registry["logger"] == "slotserve.registry"
    assert any(e["logger"].startswith("uvicorn") for e in entries)  # uvicorn's own lines, in the same format
    assert all(e["request_id"] is None for e in entries if e["logger"].startswith("uvicorn"))
    assert not any('HTTP/1.1" 200' in line and not line.startswith("{") for line in server.output.splitlines())

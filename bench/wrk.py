"""Drive HTTP load with wrk (C, costs little CPU) and read its figures."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int

    def row(self) -> str:
        errors = f"  errors={self.errors}" if self.errors else ""
        return f"{self.rps:9.1f} req/s  p50={self.p50_ms:8.2f} ms  p99={self.p99_ms:8.2f} ms{errors}"


def ensure_wrk() -> str:
    """The wrk binary; installs Debian's package when running as root, else says how."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: installing Debian's package (apt-get install -y wrk) ...", flush=True)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], **quiet).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], **quiet)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, **quiet)
        found = shutil.which("wrk")
    if not found:
        sys.exit("bench needs wrk: install it with 'sudo apt-get install wrk' (Debian/Ubuntu) and run again")
    return found


def run_wrk(url: str, paths: list[str], body: str, connections: int, seconds: float) -> Load:
    """POST ``body`` to ``paths`` (round robin) over ``connections`` keep-alive connections for ``seconds``."""
    script = _script(paths, body)
    try:
        threads = 1 if connections == 1 else 2
        out = subprocess.run(
            [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "--latency",
             "-s", script, url], capture_output=True, text=True, check=True).stdout
    finally:
        Path(script).unlink(missing_ok=True)
    return Load(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_latency(out, "50%"),
        p99_ms=_latency(out, "99%"),
        errors=sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
        + sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out)),
    )


def _latency(out: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def _script(paths: list[str], body: str) -> str:
    quoted = ", ".join(f'"{p}"' for p in paths)
    lua = f"""
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
local paths = {{{quoted}}}
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, paths[(i % #paths) + 1])
end
"""
    handle, name = tempfile.mkstemp(suffix=".lua", prefix="slotserve-wrk-")
    with os.fdopen(handle, "w") as f:
        f.write(lua)
    return name

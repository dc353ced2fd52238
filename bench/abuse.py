"""Abuse benchmark: many concurrent 64 MiB predicts against one server while a bystander client keeps predicting.

Prints figures, asserts nothing. Baselines are measured in the same run:
  - the body itself: the server's peak RSS growth for ONE 64 MiB request, as a multiple of its body, and what
    decoding the same body the plain way (orjson + numpy, as the server did before its lean decoder) costs in a
    child process;
  - the bystander's p50/p99 with nobody else on the server (idle), against its p50/p99 under attack.
Then N concurrent 64 MiB requests (from K attacker clients): the server's peak RSS growth, how many were answered
200 / 429 / other, and whether the process survived.

    python bench/abuse.py [--requests 32] [--attackers 4] [--body-mb 64]
"""

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Server, percentile, rss_mb, write_models  # noqa: E402

WIDTH = 784  # the demo "mnist" model: 784 -> 128 -> 10
MIB = 1 << 20


def big_body(megabytes: int) -> bytes:
    """``{"instances": [[...784 numbers...], ...]}`` of about ``megabytes`` MiB: six-digit floats, as sensors send."""
    rng = np.random.default_rng(0)
    row = ",".join(f"{v:.6f}" for v in rng.random(WIDTH))
    rows = max(1, (megabytes * MIB - 64) // (len(row) + 3))
    return ('{"instances": [' + ",".join(f"[{row}]" for _ in range(rows)) + "]}").encode()


def peak_reset(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM, the peak resident set, to the current RSS


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def plain_decode_cost(body: bytes) -> float:
    """Peak RSS growth (MB) of orjson.loads + np.asarray on ``body``, in a child process: the old decoding path."""
    code = ("import sys, orjson, numpy as np, resource\n"
            "body = open(sys.argv[1], 'rb').read()\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "a = np.asarray(orjson.loads(body)['instances'], np.float32)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n")
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(body)
        file.flush()
        done = subprocess.run([sys.executable, "-c", code, file.name], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


async def bystander(url: str, stop: asyncio.Event, latencies: list[float]) -> None:
    """One small predict after another, recording each latency (ms)."""
    payload = {"instances": [[0.5] * WIDTH]}
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        while not stop.is_set():
            started = time.perf_counter()
            response = await http.post("/v1/clients/bystander/predict", json=payload)
            response.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)


async def attack(url: str, body: bytes, requests: int, attackers: int) -> dict[int, int]:
    """``requests`` concurrent predicts of ``body``, spread over ``attackers`` clients; status -> count."""
    limits = httpx.Limits(max_connections=requests + 8)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        async def one(i: int) -> int:
            try:
                response = await http.post(f"/v1/clients/attacker{i % attackers}/predict", content=body)
                return response.status_code
            except httpx.HTTPError:
                return -1
        statuses = await asyncio.gather(*(one(i) for i in range(requests)))
    counts: dict[int, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


async def measure(args: argparse.Namespace) -> None:
    models = Path(tempfile.mkdtemp(prefix="slotserve-abuse-"))
    write_models(models)
    body = big_body(args.body_mb)
    print(f"body: {len(body) / MIB:.1f} MiB of JSON, {len(body) // (WIDTH * 9)} rows of {WIDTH} six-digit floats")
    plain = plain_decode_cost(body)
    async with Server(models, slots=args.attackers + 1, slot_mb=64) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            for client in ["bystander", *(f"attacker{i}" for i in range(args.attackers))]:
                (await http.put(f"/v1/clients/{client}/model", json={"model": "mnist"})).raise_for_status()
            (await http.post("/v1/clients/attacker0/predict", content=body)).raise_for_status()  # warm-up

            stop, idle = asyncio.Event(), []
            task = asyncio.ensure_future(bystander(server.url, stop, idle))
            await asyncio.sleep(args.idle_s)
            stop.set()
            await task

            start_rss = rss_mb(server.pid)
            peak_reset(server.pid)
            one = (await http.post("/v1/clients/attacker0/predict", content=body)).status_code
            single = peak_mb(server.pid) - start_rss

        start_rss = rss_mb(server.pid)
        peak_reset(server.pid)
        stop, under = asyncio.Event(), []
        task = asyncio.ensure_future(bystander(server.url, stop, under))
        started = time.perf_counter()
        counts = await attack(server.url, body, args.requests, args.attackers)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        growth = peak_mb(server.pid) - start_rss
        alive = (await httpx.AsyncClient(base_url=server.url).get("/healthz")).status_code == 200

    body_mb = len(body) / MIB
    print("\n== one request alone ==")
    print(f"  server peak RSS growth {single:8.1f} MB = {single / body_mb:.2f}x the body (status {one}); "
          f"the plain orjson+numpy decoding of the same body: {plain:.1f} MB = {plain / body_mb:.2f}x "
          f"({plain / max(single, 1e-9):.1f}x more)")
    print(f"\n== {args.requests} concurrent requests from {args.attackers} clients, {elapsed:.1f} s ==")
    print(f"  answered: {', '.join(f'{n} x {s}' for s, n in sorted(counts.items()))}   server alive: {alive}")
    print(f"  server peak RSS growth {growth:8.1f} MB = {growth / body_mb:.2f}x one body, "
          f"{growth / (body_mb * args.requests):.2f}x all bodies in flight  (goal: under 4096 MB)")
    print(f"  bystander idle:   p50 {percentile(idle, 50):7.2f} ms  p99 {percentile(idle, 99):7.2f} ms "
          f"(n={len(idle)})")
    print(f"  bystander attack: p50 {percentile(under, 50):7.2f} ms  p99 {percentile(under, 99):7.2f} ms "
          f"(n={len(under)})  = {percentile(under, 50) / percentile(idle, 50):.2f}x / "
          f"{percentile(under, 99) / percentile(idle, 99):.2f}x idle  (goal: p99 <= 5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--attackers", type=int, default=4)
    parser.add_argument("--body-mb", type=int, default=64)
    parser.add_argument("--idle-s", type=float, default=5.0)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()

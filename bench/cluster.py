"""Cluster benchmark: three replicas behind nginx (deploy/local/cluster.sh), one shared PostgreSQL, real processes.

Prints figures, asserts nothing; every figure is read against a baseline measured in the same run:
  - throughput, same generator (wrk), same model (tiny), 1-row predictions: (a) one client direct to the replica
    that holds it, (b) the same client through nginx (its hash sends it to that replica), (c) clients spread evenly
    over the three replicas through nginx. (b)/(a) is the cost of the nginx hop, (c)/(a) the scale-out (bounded
    here by the machine's cores, which the replicas, nginx and wrk share: os.cpu_count() is printed);
  - failover: the replica holding the most clients is killed with kill -9; from that instant every client predicts
    through nginx in a loop (all at once) until its first 200. Per client: old -> new replica, seconds to that
    answer, failed attempts before it; the median and max of the moved clients and of those that stayed. The
    baseline: a fresh client's first load (PUT direct to a replica), timed the same way.

    python bench/cluster.py [--seconds 5] [--quick]
"""

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, percentile  # noqa: E402
from wrk import Load, ensure_wrk, run_wrk  # noqa: E402

SCRIPT = ROOT / "deploy" / "local" / "cluster.sh"
REPLICAS = 3
MODEL = "tiny"  # a demo model: 32 -> 16 -> 10
BODY = '{"instances": [[' + ", ".join(["0.5"] * 32) + "]]}"
CANDIDATES = 30  # clients tried until each replica holds enough; also the slots per replica, so a dead replica's
#                  clients always fit on the survivors whatever the hash does
RETRY_S = 0.05  # a failover client's pause between attempts
DEADLINE_S = 60.0


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports (replicas on base .. base + N - 1, then nginx, PG)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        try:
            for i in range(count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports")


class Cluster:
    """``cluster.sh up 3`` on free ports in a temporary run dir (world-readable: as root PostgreSQL runs as the
    ``postgres`` user, who must reach its data dir), the demo models written there by ``up``; ``down`` removes it."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="slotserve-bench-cluster-"))
        self.tmp.chmod(0o755)
        self.run = self.tmp / "run"
        self.base = free_ports(REPLICAS + 2)
        self.url = f"http://127.0.0.1:{self.base + REPLICAS}"
        self.env = {**os.environ, "CLUSTER_RUN": str(self.run), "CLUSTER_PORT": str(self.base + REPLICAS),
                    "CLUSTER_BASE_PORT": str(self.base), "CLUSTER_PG_PORT": str(self.base + REPLICAS + 1),
                    "MODELS": str(self.tmp / "models"), "CLUSTER_SLOTS": str(CANDIDATES),
                    "SLOTSERVE_SLOT_MEMORY_MB": "64", "SLOTSERVE_DEVICE": "cpu", "SLOTSERVE_OWNERSHIP_CHECK_S": "1",
                    "SLOTSERVE_LOG_LEVEL": "warning", "TF_CPP_MIN_LOG_LEVEL": "3"}
        if (beside := Path(sys.executable).with_name("slotserve")).exists():
            self.env["SLOTSERVE"] = str(beside)

    def sh(self, *args: str) -> None:
        done = subprocess.run([str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def replica_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.base + i - 1}"

    def pid(self, i: int) -> int:
        return int((self.run / f"replica-{i}.pid").read_text())

    def held(self, http: httpx.Client, i: int) -> set[str]:
        """The clients replica ``i`` has in its slots: its own /v1/slots, not through nginx."""
        reply = http.get(f"{self.replica_url(i)}/v1/slots")
        reply.raise_for_status()
        return {slot["client"] for slot in reply.json()["slots"] if slot["client"] is not None}

    def holders(self, http: httpx.Client, live: list[int]) -> dict[str, int]:
        return {client: i for i in live for client in self.held(http, i)}

    def __enter__(self) -> "Cluster":
        try:
            self.sh("up", str(REPLICAS))
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)  # a failed up already stopped what it started
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.sh("down")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def load_clients(cluster: Cluster, http: httpx.Client, per_replica: int, total: int) -> dict[str, int]:
    """Load the tiny model for client-0, client-1, ... through nginx until every replica holds ``per_replica`` and
    there are ``total``: client -> the replica nginx's hash sent it to (a natural, uneven spread)."""
    where: dict[str, int] = {}
    for n in range(CANDIDATES):
        client = f"client-{n}"
        http.put(f"{cluster.url}/v1/clients/{client}/model", json={"model": MODEL}).raise_for_status()
        where = cluster.holders(http, list(range(1, REPLICAS + 1)))
        counts = [sum(i == r for i in where.values()) for r in range(1, REPLICAS + 1)]
        if min(counts) >= per_replica and len(where) >= total:
            return where
    raise RuntimeError(f"{CANDIDATES} clients did not give each replica {per_replica}: {where}")


def first_loads(cluster: Cluster, http: httpx.Client) -> list[tuple[float, float]]:
    """A fresh client's first load, PUT direct to each replica twice (each unloaded after): (wall s, server load_ms).
    The replica already serves the model to other clients, as the survivor taking a client over does."""
    timed = []
    for n in range(2):
        for i in range(1, REPLICAS + 1):
            fresh = f"{cluster.replica_url(i)}/v1/clients/first-load-{i}-{n}/model"
            start = time.monotonic()
            reply = http.put(fresh, json={"model": MODEL})
            reply.raise_for_status()
            timed.append((time.monotonic() - start, reply.json()["load_ms"]))
            http.delete(fresh).raise_for_status()
    return timed


def loads_at_once(cluster: Cluster, live: list[int], count: int) -> list[float]:
    """``count`` fresh clients' first loads started together, PUT direct to the ``live`` replicas in turn: the wall
    seconds of each, from the common start. What the survivors do in a failover, minus the takeover itself."""
    go = threading.Barrier(count)

    def one(n: int) -> float:
        url = f"{cluster.replica_url(live[n % len(live)])}/v1/clients/at-once-{n}/model"
        with httpx.Client(timeout=60, trust_env=False) as http:
            go.wait()
            start = time.monotonic()
            http.put(url, json={"model": MODEL}).raise_for_status()
            wall = time.monotonic() - start
            http.delete(url).raise_for_status()
        return wall

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def measure(url: str, paths: list[str], connections: int, seconds: float) -> Load:
    run_wrk(url, paths, BODY, connections, 1)  # warm-up: connections, traces, nginx's keepalive pool
    return run_wrk(url, paths, BODY, connections, seconds)


def throughput(cluster: Cluster, where: dict[str, int], per_replica: int, seconds: float) -> None:
    one = min(where, key=lambda c: int(c.split("-")[1]))
    home = where[one]
    spread: list[str] = []  # the same number of clients on every replica, so none is the bottleneck alone
    for r in range(1, REPLICAS + 1):
        spread += sorted((c for c in where if where[c] == r), key=lambda c: int(c.split("-")[1]))[:per_replica]
    path = [f"/v1/clients/{one}/predict"]
    print(f"\n== throughput: {MODEL} model, 1-row predictions, wrk, {seconds:g} s per run after a 1 s warm-up ==")
    print(f"machine: os.cpu_count()={os.cpu_count()}; the 3 replicas, nginx (1 worker) and wrk share these cores "
          f"(load average before the runs: {os.getloadavg()[0]:.2f})")
    rows: dict[tuple[str, int], Load] = {}
    for c in (1, 32):
        rows[("a", c)] = measure(cluster.replica_url(home), path, c, seconds)
        rows[("b", c)] = measure(cluster.url, path, c, seconds)
        print(f"  c={c:<3d} {f'(a) {one} direct to replica-{home}':44s} {rows[('a', c)].row()}")
        print(f"        {f'(b) {one} through nginx (-> replica-{home})':44s} {rows[('b', c)].row()}")
    rows[("c", 32)] = measure(cluster.url, [f"/v1/clients/{c}/predict" for c in spread], 32, seconds)
    label = f"(c) {len(spread)} clients, {per_replica} per replica, via nginx"
    print(f"  c=32  {label:44s} {rows[('c', 32)].row()}")
    print("ratios (same run):")
    for c in (1, 32):
        a, b = rows[("a", c)], rows[("b", c)]
        print(f"  nginx hop, c={c:<2d}: (b)/(a) req/s {b.rps / a.rps:.2f}x, p50 {b.p50_ms / a.p50_ms:.2f}x, "
              f"p99 {b.p99_ms / a.p99_ms:.2f}x")
    a, c3 = rows[("a", 32)], rows[("c", 32)]
    print(f"  scale-out, c=32: (c)/(a) req/s {c3.rps / a.rps:.2f}x, p50 {c3.p50_ms / a.p50_ms:.2f}x, "
          f"p99 {c3.p99_ms / a.p99_ms:.2f}x")
    print(f"  (the ideal is {REPLICAS}x with a core or more per replica; here {REPLICAS} replicas, nginx and wrk share "
          f"{os.cpu_count()} cores, so this ratio is bounded by the cores, not by the replicas)")


def until_first_success(url: str, client: str, go: threading.Event, t0: list[float]) -> tuple[float, list[str]]:
    """Wait for ``go``, then predict through nginx until a 200: seconds from the kill (``t0[0]``) and what failed
    before it (status codes, or the transport error's type). One warm request first, so the connection is open."""
    with httpx.Client(base_url=url, timeout=45, trust_env=False) as http:
        http.post(f"/v1/clients/{client}/predict", content=BODY,
                  headers={"Content-Type": "application/json"}).raise_for_status()
        go.wait()
        failures: list[str] = []
        while True:
            try:
                reply = http.post(f"/v1/clients/{client}/predict", content=BODY,
                                  headers={"Content-Type": "application/json"})
                if reply.status_code == 200:
                    return time.monotonic() - t0[0], failures
                failures.append(str(reply.status_code))
            except httpx.TransportError as exc:
                failures.append(type(exc).__name__)
            if time.monotonic() - t0[0] > DEADLINE_S:
                return float("nan"), failures
            time.sleep(RETRY_S)


def failover(cluster: Cluster, where: dict[str, int], baseline: list[tuple[float, float]]) -> None:
    counts = {r: sum(i == r for i in where.values()) for r in range(1, REPLICAS + 1)}
    victim = max(counts, key=counts.__getitem__)
    clients = sorted(where, key=lambda c: int(c.split("-")[1]))
    go, t0 = threading.Event(), [0.0]
    with ThreadPoolExecutor(len(clients)) as pool:
        futures = {c: pool.submit(until_first_success, cluster.url, c, go, t0) for c in clients}
        time.sleep(2)  # every client's warm request done, its connection to nginx open
        t0[0] = time.monotonic()
        os.kill(cluster.pid(victim), signal.SIGKILL)
        go.set()
        answered = {c: f.result() for c, f in futures.items()}
    live = [r for r in range(1, REPLICAS + 1) if r != victim]
    with httpx.Client(timeout=30, trust_env=False) as http:
        now = cluster.holders(http, live)
    at_once = loads_at_once(cluster, live, counts[victim])
    print(f"\n== failover: kill -9 replica-{victim} holding {counts[victim]} of {len(clients)} clients "
          f"(spread {', '.join(f'replica-{r}: {n}' for r, n in counts.items())}); from the kill every client predicts "
          f"through nginx, all at once, retrying every {RETRY_S * 1000:.0f} ms, until its first 200 ==")
    moved, stayed = [], []
    for c in clients:
        seconds, failures = answered[c]
        if where[c] == victim:
            route, bucket = f"replica-{victim} -> replica-{now[c]}" if c in now else f"replica-{victim} -> ?", moved
        else:
            route, bucket = f"replica-{where[c]} stayed", stayed
        bucket.append(seconds)
        kinds = ", ".join(f"{k} x{failures.count(k)}" for k in sorted(set(failures)))
        print(f"  {c:10s} {route:24s} {seconds:7.3f} s to first success, {len(failures)} failed before"
              + (f" ({kinds})" if kinds else ""))
    walls = [wall for wall, _ in baseline]
    first = percentile(walls, 50)
    print(f"baseline, same run: a fresh client's first load, PUT direct to each replica twice: {first:.3f} s median "
          f"(wall {', '.join(f'{w:.3f}' for w in walls)} s; server load_ms "
          f"{', '.join(f'{ms:.0f}' for _, ms in baseline)})")
    together = percentile(at_once, 50), max(at_once)
    print(f"baseline, same run, after the failover: {len(at_once)} fresh clients' first loads started together, direct "
          f"to the survivors: median {together[0]:.3f} s, max {together[1]:.3f} s")
    for name, values in (("moved", moved), ("stayed", stayed)):
        if values:
            med, top = percentile(values, 50), max(values)
            ratio = (f"  -> {med / first:.2f}x / {top / first:.2f}x one first load, {med / together[0]:.2f}x / "
                     f"{top / together[1]:.2f}x {len(at_once)} loads at once") if name == "moved" else ""
            print(f"  {name:6s} ({len(values):2d}): median {med:.3f} s, max {top:.3f} s{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured wrk run")
    parser.add_argument("--quick", action="store_true", help="1 s wrk runs, 6 clients (a smoke run)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else args.seconds
    per_replica, total = (2, 6) if args.quick else (3, 12)
    ensure_wrk()
    print(f"starting {REPLICAS} replicas behind nginx (cluster.sh up {REPLICAS}) ...", flush=True)
    with Cluster() as cluster, httpx.Client(timeout=60, trust_env=False) as http:
        where = load_clients(cluster, http, per_replica, total)
        baseline = first_loads(cluster, http)
        throughput(cluster, where, per_replica, seconds)
        failover(cluster, where, baseline)


if __name__ == "__main__":
    main()

"""Churn benchmark: one client swaps models M times while the others predict; then the process-per-client approach.

Prints figures, asserts nothing. Everything is measured in this run:
  - slotserve: swap latency p50/p99 per strategy, failed requests per client, the largest residue after any swap or
    unload, the server's RSS at start, after warm-up and at the end, and the RAM each extra client costs;
  - process-per-client: one server process per client holding its own TF runtime and model, where a swap means
    stopping the process and starting a new one with the new model: its swap latency and RSS per client;
  - the ratios between the two.

    python bench/churn.py [--clients 4] [--swaps 1000] [--quiet-swaps 60] [--ppc-swaps 4]
"""

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Server, percentile, rss_mb, write_models  # noqa: E402

SWAP_CYCLE = ["mnist", "medium", "medium_b"]  # mnist->medium side_by_side, medium->medium_b replace, back side_by_side
SLOT_MB = 12  # room for medium (7.1 MiB) beside mnist, not beside another medium


async def churn(args: argparse.Namespace, models: Path) -> dict:
    server = Server(models, slots=args.clients, slot_mb=SLOT_MB)
    async with server:
        figures = {"rss_start": rss_mb(server.pid)}
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            steady = [f"steady{i}" for i in range(1, args.clients)]
            rss_before_clients = rss_mb(server.pid)
            for client in steady:
                (await http.put(f"/v1/clients/{client}/model", json={"model": "medium"})).raise_for_status()
            figures["per_client_mb"] = (rss_mb(server.pid) - rss_before_clients) / max(len(steady), 1)
            (await http.put("/v1/clients/churn/model", json={"model": "mnist"})).raise_for_status()

            failures = {client: 0 for client in [*steady, "churn"]}
            churn_failures = {"side_by_side": 0, "replace": 0}
            latencies: dict[str, list[float]] = {"side_by_side": [], "replace": []}
            medium_latencies: list[float] = []
            residues = [0]
            state = {"strategy": "side_by_side", "done": False}

            async def predict_forever(client: str, width: int) -> None:
                body = {"instances": [[0.5] * width]}
                while not state["done"]:
                    response = await http.post(f"/v1/clients/{client}/predict", json=body)
                    if response.status_code != 200:
                        failures[client] += 1
                        if client == "churn":
                            churn_failures[state["strategy"]] += 1

            async def swap(count: int, record: bool) -> None:
                for i in range(count):
                    model = SWAP_CYCLE[(i + 1) % len(SWAP_CYCLE)]
                    state["strategy"] = "replace" if model == "medium_b" else "side_by_side"
                    started = time.perf_counter()
                    response = await http.put("/v1/clients/churn/model", json={"model": model})
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        failures["churn"] += 1
                        continue
                    body = response.json()
                    residues.append(body["residue_bytes"])
                    if record:
                        latencies[body["strategy"]].append(elapsed)
                        if model.startswith("medium"):
                            medium_latencies.append(elapsed)

            async def run(count: int, record: bool) -> None:
                state["done"] = False
                predictors = [asyncio.create_task(predict_forever(c, 784)) for c in steady]
                predictors.append(asyncio.create_task(predict_forever("churn", 784)))
                try:
                    await swap(count, record)
                finally:
                    state["done"] = True
                    await asyncio.gather(*predictors)

            await run(min(30, args.swaps), record=False)  # warm-up
            figures["rss_warm"] = rss_mb(server.pid)
            await swap(args.quiet_swaps, record=True)  # nobody predicting: the like-for-like swap figure
            figures["quiet_medium_latencies"] = list(medium_latencies)
            medium_latencies.clear()
            for values in latencies.values():
                values.clear()
            started = time.perf_counter()
            await run(args.swaps, record=True)
            figures["churn_s"] = time.perf_counter() - started
            for client in [*steady, "churn"]:
                response = await http.delete(f"/v1/clients/{client}/model")
                residues.append(response.json()["residue_bytes"])
            slots = (await http.get("/v1/slots")).json()["slots"]
            figures.update(
                rss_end=rss_mb(server.pid), latencies=latencies, medium_latencies=medium_latencies,
                failures=failures, churn_failures=churn_failures, max_residue=max(residues),
                slot_residue=sum(s["residue_bytes"] for s in slots),
                in_use_end=sum(s["memory"]["in_use_bytes"] for s in slots),
            )
    return figures


async def process_per_client(models: Path, swaps: int) -> dict:
    """A swap is: stop the client's process, start a new one, load the new model, answer one prediction."""
    latencies, rss = [], []
    model = "medium"
    server = Server(models, slots=1, slot_mb=SLOT_MB)
    await server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        (await http.put("/v1/clients/only/model", json={"model": model})).raise_for_status()
    for i in range(swaps):
        model = "medium_b" if model == "medium" else "medium"
        started = time.perf_counter()
        await server.stop()
        server = Server(models, slots=1, slot_mb=SLOT_MB)
        await server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            (await http.put("/v1/clients/only/model", json={"model": model})).raise_for_status()
            (await http.post("/v1/clients/only/predict", json={"instances": [[0.5] * 784]})).raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
        rss.append(rss_mb(server.pid))
    await server.stop()
    return {"latencies": latencies, "rss": statistics.median(rss)}


def report(args: argparse.Namespace, s: dict, p: dict) -> None:
    print(f"\n== slotserve: {args.clients} clients, {args.swaps} swaps of one client in {s['churn_s']:.0f} s ==")
    for strategy, values in s["latencies"].items():
        if values:
            print(f"swap {strategy:13s} n={len(values):5d}  p50={percentile(values, 50):8.1f} ms"
                  f"  p99={percentile(values, 99):8.1f} ms")
    print("failed requests per client: " + ", ".join(f"{c}={n}" for c, n in s["failures"].items()))
    print(f"swapping client's failed predictions by strategy in flight: {s['churn_failures']}")
    print(f"max residue after any swap or unload: {s['max_residue']} bytes;"
          f" cumulative per-slot residue: {s['slot_residue']} bytes; in use after all unloads: {s['in_use_end']}")
    print(f"server RSS: start {s['rss_start']:.0f} MB, after warm-up {s['rss_warm']:.0f} MB, end {s['rss_end']:.0f} MB"
          f"  (growth warm-up->end {s['rss_end'] - s['rss_warm']:+.1f} MB)")
    print(f"RAM per extra client (medium model loaded): {s['per_client_mb']:.1f} MB")
    print(f"\n== process-per-client baseline: {len(p['latencies'])} swaps ==")
    print(f"swap (stop + start + load + first answer) p50={percentile(p['latencies'], 50):.0f} ms"
          f"  max={max(p['latencies']):.0f} ms;  RSS per client process: {p['rss']:.0f} MB")
    ppc = percentile(p["latencies"], 50)
    print("\n== ratios (same run) ==")
    for label, key in (("nobody else predicting", "quiet_medium_latencies"),
                       (f"{args.clients} clients predicting flat out", "medium_latencies")):
        medium = percentile(s[key], 50)
        print(f"swap to the ~1.9M-parameter model, {label}: slotserve p50 {medium:.0f} ms vs process-per-client"
              f" p50 {ppc:.0f} ms (measured with nobody predicting) -> {ppc / medium:.1f}x faster")
    print(f"RAM per extra client: {s['per_client_mb']:.1f} MB vs {p['rss']:.0f} MB per process -> "
          f"{s['per_client_mb'] / p['rss']:.3f} of a process ({p['rss'] / max(s['per_client_mb'], 0.1):.0f}x less)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--swaps", type=int, default=1000)
    parser.add_argument("--quiet-swaps", type=int, default=60, help="swaps measured while nobody predicts")
    parser.add_argument("--ppc-swaps", type=int, default=4, help="process-per-client swaps (each takes seconds)")
    args = parser.parse_args()
    models = Path(tempfile.mkdtemp(prefix="slotserve-churn-"))
    try:
        write_models(models)
        shutil.copy(models / "medium.keras", models / "medium_b.keras")
        s = asyncio.run(churn(args, models))
        p = asyncio.run(process_per_client(models, args.ppc_swaps))
        report(args, s, p)
    finally:
        shutil.rmtree(models, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()

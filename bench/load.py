"""Load benchmark: slotserve against hand-written servers, same generator (wrk), same models, same run.

Prints figures, asserts nothing:
  - the floor: one-row calls/s of the model's tf.function, in process, no HTTP;
  - slotserve, a minimal FastAPI + tf.function server (no batching) and a naive FastAPI + model.predict server,
    for the tiny (32->16->10) and medium (784->1024->1024->10) models at concurrency 1, 32 and 128:
    requests/s, p50, p99, and slotserve's ratio to each baseline;
  - 8 clients, each with its own model in its own slot, 32 concurrent requests spread across them;
  - the other clients' p99 while a big (~20M-parameter) model is loaded again and again in another slot.

    python bench/load.py [--seconds 5] [--quick]
"""

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Server, Service, free_port, write_big_model, write_models  # noqa: E402
from wrk import Load, ensure_wrk, run_wrk  # noqa: E402

WIDTH = {"tiny": 32, "medium": 784}
CONCURRENCY = [1, 32, 128]
BASELINE = str(Path(__file__).resolve().parent / "baselines" / "minimal_server.py")


def body(model: str) -> str:
    return '{"instances": [[' + ", ".join(["0.5"] * WIDTH[model]) + "]]}"


def measure(url: str, paths: list[str], payload: str, connections: int, seconds: float) -> Load:
    run_wrk(url, paths, payload, connections, 1)  # warm-up: connections, traces, caches
    return run_wrk(url, paths, payload, connections, seconds)


async def slotserve_matrix(models: Path, seconds: float) -> dict:
    results = {}
    async with Server(models, slots=8, slot_mb=256) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            for model in WIDTH:
                (await http.put(f"/v1/clients/{model}/model", json={"model": model})).raise_for_status()
        for model in WIDTH:
            for c in CONCURRENCY:
                results[(model, c)] = measure(server.url, [f"/v1/clients/{model}/predict"], body(model), c, seconds)
    return results


async def baseline_matrix(models: Path, mode: str, seconds: float, concurrency: list[int]) -> dict:
    results = {}
    for model in WIDTH:
        port = free_port()
        args = [sys.executable, BASELINE, "--model", str(models / f"{model}.keras"), "--port", str(port),
                "--mode", mode]
        async with Service(args, port, "/ready") as service:
            for c in concurrency:
                results[(model, c)] = measure(service.url, ["/predict"], body(model), c, seconds)
    return results


async def multi_client(models: Path, seconds: float) -> Load:
    async with Server(models, slots=8, slot_mb=256) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            for i in range(8):
                (await http.put(f"/v1/clients/c{i}/model", json={"model": "tiny"})).raise_for_status()
        return measure(server.url, [f"/v1/clients/c{i}/predict" for i in range(8)], body("tiny"), 32, seconds)


async def during_big_loads(models: Path, seconds: float) -> tuple[Load, Load, int]:
    """Three clients' figures idle, then while a fourth client swaps a ~20M-parameter model in and out."""
    async with Server(models, slots=4, slot_mb=256) as server:
        paths = [f"/v1/clients/c{i}/predict" for i in range(3)]
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
            for i in range(3):
                (await http.put(f"/v1/clients/c{i}/model", json={"model": "tiny"})).raise_for_status()
            (await http.put("/v1/clients/big/model", json={"model": "big"})).raise_for_status()
            idle = await asyncio.to_thread(measure, server.url, paths, body("tiny"), 8, seconds)
            done, loads = asyncio.Event(), 0

            async def keep_loading() -> None:
                nonlocal loads
                while not done.is_set():
                    model = "big_b" if loads % 2 == 0 else "big"
                    (await http.put("/v1/clients/big/model", json={"model": model})).raise_for_status()
                    loads += 1

            loader = asyncio.create_task(keep_loading())
            busy = await asyncio.to_thread(measure, server.url, paths, body("tiny"), 8, seconds)
            done.set()
            await loader
    return idle, busy, loads


def floor(models: Path, model: str) -> float:
    out = subprocess.run([sys.executable, str(Path(BASELINE).parent / "floor.py"), str(models / f"{model}.keras")],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return float(out.strip().splitlines()[-1])


def report(floors: dict, ours: dict, minimal: dict, naive: dict, multi: Load, big: tuple) -> None:
    print("\n== single client: requests/s, p50, p99 (wrk, 1-row requests) ==")
    for model in WIDTH:
        print(f"\n{model}: in-process tf.function floor {floors[model]:.0f} calls/s")
        for c in CONCURRENCY:
            print(f"  c={c:<4d} slotserve {ours[(model, c)].row()}")
            print(f"         minimal   {minimal[(model, c)].row()}")
            if (model, c) in naive:
                print(f"         naive     {naive[(model, c)].row()}")
            ratios = [f"{ours[(model, c)].rps / minimal[(model, c)].rps:.2f}x minimal's req/s",
                      f"p50 {ours[(model, c)].p50_ms / minimal[(model, c)].p50_ms:.2f}x minimal's"]
            if (model, c) in naive:
                ratios.append(f"{ours[(model, c)].rps / naive[(model, c)].rps:.0f}x naive's req/s")
            ratios.append(f"{ours[(model, c)].rps / floors[model]:.2f}x the floor")
            print("         slotserve: " + ", ".join(ratios))
    print("\n== 8 clients, 8 slots, tiny, 32 concurrent requests spread across them ==")
    print(f"  slotserve {multi.row()}  -> {multi.rps / minimal[('tiny', 32)].rps:.2f}x the minimal server at c=32")
    idle, busy, loads = big
    print("\n== 3 clients predicting (c=8) while a 4th swaps a ~20M-parameter model in and out ==")
    print(f"  idle            {idle.row()}")
    print(f"  during {loads:3d} loads {busy.row()}  -> p99 {busy.p99_ms / idle.p99_ms:.2f}x idle")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured wrk run")
    parser.add_argument("--quick", action="store_true", help="tiny model only, skip the naive server")
    args = parser.parse_args()
    ensure_wrk()
    models = Path(tempfile.mkdtemp(prefix="slotserve-load-"))
    try:
        write_models(models)
        write_big_model(models / "big.keras")
        shutil.copy(models / "big.keras", models / "big_b.keras")
        if args.quick:
            WIDTH.pop("medium")
        floors = {model: floor(models, model) for model in WIDTH}
        ours = asyncio.run(slotserve_matrix(models, args.seconds))
        minimal = asyncio.run(baseline_matrix(models, "minimal", args.seconds, CONCURRENCY))
        naive = {} if args.quick else asyncio.run(baseline_matrix(models, "naive", args.seconds, [1, 32]))
        multi = asyncio.run(multi_client(models, args.seconds))
        big = asyncio.run(during_big_loads(models, args.seconds))
        report(floors, ours, minimal, naive, multi, big)
    finally:
        shutil.rmtree(models, ignore_errors=True)


if __name__ == "__main__":
    main()

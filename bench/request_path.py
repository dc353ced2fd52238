"""Where the time of one small request goes, stage by stage, in process (prints microseconds per stage).

Stages: JSON decode, validation + numpy conversion, the hop to the slot's thread and back, the TF call, shaping the
response, JSON encode; then the whole request through the ASGI app (routing, middleware, all of the above). The
difference between the whole and the stages is the web framework's share.

    python bench/request_path.py [--model tiny]
"""

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx  # noqa: E402
import orjson  # noqa: E402

import app  # noqa: F401 - sets TF_CPU_ALLOCATOR_USE_BFC before TensorFlow is imported
from app.api import create_app  # noqa: E402
from app.registry import Registry  # noqa: E402
from app.registry.tensors import format_response, parse_request  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.state import KeyRing, SQLiteState, create_key  # noqa: E402

N = 3000


def per_call_us(fn, n: int = N) -> float:
    for _ in range(200):
        fn()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


async def per_call_us_async(fn, n: int = N) -> float:
    for _ in range(200):
        await fn()
    started = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - started) / n * 1e6


async def measure(models: Path, model: str) -> None:
    state = Path(tempfile.mkdtemp(prefix="slotserve-state-")) / "state.db"
    settings = Settings(model_dir=models, slots=2, slot_memory_mb=64, device="cpu", state=str(state))
    registry = Registry.from_settings(settings)
    application = create_app(settings, registry)
    async with application.router.lifespan_context(application):
        await registry.load("c", model)
        slot = registry.slots[0]
        servable = slot.model
        width = servable.inputs[0].shape[1]
        raw = orjson.dumps({"instances": [[0.5] * width]})
        body = orjson.loads(raw)
        arrays, columnar = parse_request(body, servable.inputs, settings.max_rows)
        outputs = servable(arrays)
        stages = {
            "JSON decode (orjson)": per_call_us(lambda: orjson.loads(raw)),
            "validate + to numpy": per_call_us(lambda: parse_request(body, servable.inputs, settings.max_rows)),
            "TF call (concrete function)": per_call_us(lambda: servable(arrays)),
            "thread hop + TF call": await per_call_us_async(lambda: slot.infer(servable, arrays)),
            "batch queue + hop + TF call": await per_call_us_async(lambda: slot.loaded.queue.predict(arrays, 1)),
            "registry.predict (all of it)": await per_call_us_async(lambda: registry.predict("c", body)),
            "shape response": per_call_us(lambda: format_response(outputs, servable.outputs, columnar)),
            "JSON encode (orjson, numpy)": per_call_us(
                lambda: orjson.dumps(format_response(outputs, servable.outputs, columnar),
                                     option=orjson.OPT_SERIALIZE_NUMPY)),
        }
        keys = SQLiteState(Path(tempfile.mkdtemp(prefix="slotserve-keys-")) / "keys.db")
        key, _ = create_key(keys, "c")
        ring = KeyRing(keys)
        stages["authenticate an API key (digest + cache)"] = per_call_us(lambda: ring.authenticate(key))
        keys.close()
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            stages["whole request via ASGI (+ httpx client)"] = await per_call_us_async(
                lambda: http.post("/v1/clients/c/predict", content=raw), n=1000)
    print(f"\n== one 1-row request to '{model}', microseconds per stage (in process, {N} calls each) ==")
    for label, us in stages.items():
        print(f"  {label:42s} {us:8.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()
    models = Path(tempfile.mkdtemp(prefix="slotserve-path-"))
    subprocess.run([sys.executable, "-m", "app.cli", "demo-models", str(models)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    asyncio.run(measure(models, args.model))


if __name__ == "__main__":
    main()

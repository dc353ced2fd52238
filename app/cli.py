"""The ``slotserve`` command: ``serve`` and ``demo-models``."""

import argparse
import logging
import sys
from pathlib import Path

from app.errors import PlanError
from app.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slotserve", description="Keras model server with per-client memory slots.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the model store over HTTP")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--model-dir", type=Path, help="model store directory (default ./models)")
    serve.add_argument("--slots", type=int, help="slots per GPU, or in total on a CPU host (default 4)")
    serve.add_argument("--slot-memory-mb", type=int, help="memory per slot in MiB (default 1024)")
    serve.add_argument("--device", choices=["auto", "gpu", "cpu"], help="device kind (default auto)")
    demo = commands.add_parser("demo-models", help="write small demo Keras models into a directory")
    demo.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if args.command == "demo-models":
        return _demo_models(args.directory)
    overrides = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    try:
        settings = Settings(**overrides)
    except ValueError as exc:
        return _fail(f"invalid setting: {exc}".replace("\n", " "))
    return _serve(settings)


def _serve(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not settings.model_dir.is_dir():
        return _fail(f"model directory {settings.model_dir} does not exist (slotserve demo-models DIR writes one)")
    import uvicorn

    from app.api import create_app
    from app.partitions import plan_partitions

    try:
        plan_partitions(settings.slots, settings.slot_memory_mb, settings.device)
    except PlanError as exc:
        return _fail(f"cannot plan slots: {exc}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0


def _demo_models(directory: Path) -> int:
    from app.demo import write_demo_models

    for path in write_demo_models(directory):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def _fail(message: str) -> int:
    print(f"slotserve: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

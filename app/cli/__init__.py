"""The ``slotserve`` command: ``serve``, ``keys``, ``state`` and ``demo-models``.

Light on purpose: only ``serve`` and ``demo-models`` import TensorFlow, so ``slotserve keys ...`` and
``slotserve state ...`` answer at once.
"""

import argparse
import sys
from pathlib import Path

from app.cli import keys, serve, state
from app.cli.common import fail

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slotserve", description="Keras model server with per-client memory slots.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(commands)
    keys.add_parser(commands)
    state.add_parser(commands)
    demo = commands.add_parser("demo-models", help="write small demo Keras models into a directory")
    demo.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if args.command == "demo-models":
        return _demo_models(args.directory)
    return args.run(args)


def _demo_models(directory: Path) -> int:
    from app.demo import write_demo_models

    try:
        paths = write_demo_models(directory)
    except OSError as exc:
        return fail(f"cannot write demo models to {directory}: {exc.strerror or exc}")
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

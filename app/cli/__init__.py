"""The ``slotserve`` command: ``serve``, ``keys``, ``state``, ``status`` and ``demo-models``.

Light on purpose: only ``serve`` and ``demo-models`` import TensorFlow, so ``slotserve keys ...``,
``slotserve state ...`` and ``slotserve status`` answer at once.
"""

import importlib.metadata
import sys
from pathlib import Path

from app.cli import keys, serve, state, status
from app.cli.common import fail
from app.cli.flags import OneLineParser
from app.errors import StateUnavailable

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="slotserve", description="Keras model server with per-client memory slots.")
    parser.add_argument("--version", action="version", version=f"slotserve {version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    serve.add_parser(commands)
    keys.add_parser(commands)
    state.add_parser(commands)
    status.add_parser(commands)
    demo = commands.add_parser("demo-models", help="write small demo Keras models into a directory, "
                               "skipping every name the directory already has (never overwrites)")
    demo.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if args.command == "demo-models":
        return _demo_models(args.directory)
    try:
        return args.run(args)
    except StateUnavailable as exc:  # the database went away during a keys/state command: one line, no traceback
        return fail(exc.message)


def _demo_models(directory: Path) -> int:
    from app.demo import write_demo_models

    try:
        outcomes = write_demo_models(directory)
    except OSError as exc:
        return fail(f"cannot write demo models to {directory}: {exc.strerror or exc}")
    for demo in outcomes:
        if demo.existing is None:
            print(f"wrote {demo.path} ({demo.path.stat().st_size} bytes)")
        else:
            print(f"kept {demo.existing}: the store already has a '{demo.name}', so the demo one is not written "
                  "(existing models are never overwritten)")
    return 0


def version() -> str:
    """The installed distribution's version (what pip and the wheel say), else the source tree's."""
    try:
        return importlib.metadata.version("slotserve")
    except importlib.metadata.PackageNotFoundError:
        from app import __version__

        return __version__


if __name__ == "__main__":
    sys.exit(main())

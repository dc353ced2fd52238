"""``slotserve serve``: check the start-up policy, plan the slots, serve over HTTP."""

import argparse
import socket

from app.cli.common import fail, settings_from
from app.cli.flags import add_settings_flags
from app.errors import PlanError, StateError
from app.logs import configure_logging
from app.settings import Settings
from app.state import StateStore, open_state


def add_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve the model store over HTTP (every setting is a flag)",
                                usage="%(prog)s [--FLAG [VALUE] ...]")
    serve.set_defaults(run=run, flagged=add_settings_flags(serve))  # every setting but secrets: app/cli/flags.py


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, args.flagged)
    if isinstance(settings, str):
        return fail(settings)
    return serve(settings)


def serve(settings: Settings) -> int:
    """Serve until stopped; 2 with one line on stderr when the configuration cannot be served."""
    configure_logging(settings.log_level, settings.log_format)  # uvicorn's lines too: app/logs.py
    if not settings.model_dir.is_dir():
        return fail(f"model directory {settings.model_dir} does not exist (slotserve demo-models DIR writes one)")
    from app.api.access import startup_refusal

    try:
        state = open_state(settings.state)
    except StateError as exc:
        return fail(str(exc))
    try:
        if refusal := startup_refusal(settings, state):
            return fail(refusal)
        try:
            sock = socket.create_server((settings.host, settings.port),
                                        family=socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
        except OSError as exc:
            return fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")
        with sock:
            return _serve(settings, state, sock)
    finally:
        state.close()


def _serve(settings: Settings, state: StateStore, sock: socket.socket) -> int:
    from app import serving
    from app.api import create_app
    from app.partitions import plan_partitions

    try:
        plan_partitions(settings.slots, settings.slot_memory_mb, settings.device, settings.gpu_headroom_mb)
    except PlanError as exc:
        return fail(f"cannot plan slots: {exc}")
    serving.run(create_app(settings, state=state), settings, sock)
    return 0

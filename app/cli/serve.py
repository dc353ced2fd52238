"""``slotserve serve``: check the start-up policy, plan the slots, serve over HTTP."""

import argparse
import logging
import socket
from pathlib import Path

from app.cli.common import add_state_flag, fail, settings_from
from app.errors import PlanError, StateError
from app.settings import Settings
from app.state import StateStore, open_state

_SETTINGS = ("host", "port", "model_dir", "slots", "slot_memory_mb", "device", "state", "no_auth", "allowed_hosts",
             "trust_savedmodel_ops", "forget")


def add_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve the model store over HTTP")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--model-dir", type=Path, help="model store directory (default ./models)")
    serve.add_argument("--slots", type=int, help="slots per GPU, or in total on a CPU host (default 4)")
    serve.add_argument("--slot-memory-mb", type=int, help="memory per slot in MiB (default 1024)")
    serve.add_argument("--device", choices=["auto", "gpu", "cpu"], help="device kind (default auto)")
    add_state_flag(serve)
    serve.add_argument("--no-auth", action="store_true", default=None,
                       help="start without keys even on a non-loopback address, on purpose "
                       "(keys, when any exist, still win)")
    serve.add_argument("--allowed-hosts", help="comma-separated host names answered besides loopback ones "
                       "('*': any); enforced in open mode, and with keys when given")
    serve.add_argument("--forget", action="store_true", default=None,
                       help="start empty: forget the clients the state file remembers (keys stay)")
    serve.add_argument("--trust-savedmodel-ops", action="store_true", default=None,
                       help="load SavedModels whose graphs run file, Python-callback or remote ops")
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, _SETTINGS)
    if isinstance(settings, str):
        return fail(settings)
    return serve(settings)


def serve(settings: Settings) -> int:
    """Serve until stopped; 2 with one line on stderr when the configuration cannot be served."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
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
        plan_partitions(settings.slots, settings.slot_memory_mb, settings.device)
    except PlanError as exc:
        return fail(f"cannot plan slots: {exc}")
    serving.run(create_app(settings, state=state), settings, sock)
    return 0

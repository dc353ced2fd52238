"""``slotserve serve``: check the start-up policy, plan the slots, serve over HTTP."""

import argparse
import logging
from pathlib import Path

from app.cli.common import add_state_flag, fail, settings_from
from app.errors import PlanError, StateError
from app.settings import Settings

_SETTINGS = ("host", "port", "model_dir", "slots", "slot_memory_mb", "device", "state", "no_auth", "allowed_hosts")


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
                       help="serve without API keys even on a non-loopback address (on purpose)")
    serve.add_argument("--allowed-hosts", help="comma-separated host names answered besides loopback ones "
                       "('*': any); enforced in open mode, and with keys when given")
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
    from app.state import KeyRing, open_state

    try:
        state = open_state(settings.state)
    except StateError as exc:
        return fail(str(exc))
    try:
        admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
        if refusal := startup_refusal(settings, KeyRing(state, admin_key)):
            return fail(refusal)
        return _serve(settings, state)
    finally:
        state.close()


def _serve(settings: Settings, state: object) -> int:
    import uvicorn

    from app.api import create_app
    from app.partitions import plan_partitions

    try:
        plan_partitions(settings.slots, settings.slot_memory_mb, settings.device)
    except PlanError as exc:
        return fail(f"cannot plan slots: {exc}")
    app = create_app(settings, state=state)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0

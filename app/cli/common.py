"""What every command shares: one-line failures and settings built from flags and the environment."""

import argparse
import sys
from typing import Any

from pydantic import ValidationError

from app.settings import Settings


def fail(message: str, status: int = 2) -> int:
    """Print ``slotserve: error: <message>`` on one line of stderr; return the exit status."""
    print(f"slotserve: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def settings_from(args: argparse.Namespace, names: tuple[str, ...]) -> Settings | str:
    """Settings from the environment overridden by the given flags, or a one-line reason they are invalid.

    The reason never repeats an input value: a setting may be a secret (the admin key).
    """
    overrides: dict[str, Any] = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, p['loc'])) or 'settings'}: {p['msg'].removeprefix('Value error, ')}"
                    for p in exc.errors(include_input=False, include_url=False)]
        return "invalid setting: " + "; ".join(problems)


def add_state_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", help="the state: a SQLite file (default slotserve.db) or a PostgreSQL URL "
                        "(postgresql://user@host/db); env SLOTSERVE_STATE")

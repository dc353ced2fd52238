"""``slotserve state show|clear``: the assignments the state file remembers (keys are ``slotserve keys``).

A restart puts every remembered client's model back; ``state clear`` (or ``serve --forget``) starts empty on
purpose. Never imports TensorFlow.
"""

import argparse
import datetime
import json

from app.cli.common import add_state_flag, fail, settings_from
from app.errors import StateError
from app.state import open_state


def add_parser(commands: argparse._SubParsersAction) -> None:
    state = commands.add_parser("state", help="what the state (file or database) remembers of clients' models")
    verbs = state.add_subparsers(dest="verb", required=True)
    show = verbs.add_parser("show", help="list the remembered assignments")
    show.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    clear = verbs.add_parser("clear", help="forget every assignment: the next start is empty (keys stay)")
    whose = clear.add_mutually_exclusive_group()
    whose.add_argument("--replica", metavar="ID", help="a shared (PostgreSQL) state: forget only the clients this "
                       "replica holds (it drops them within --ownership-check-s if it runs)")
    whose.add_argument("--all", action="store_true", help="a shared state: forget every replica's clients (every "
                       "running replica drops them within --ownership-check-s)")
    for verb, handler in ((show, _show), (clear, _clear)):
        add_state_flag(verb)
        verb.set_defaults(run=handler)


def _show(args: argparse.Namespace) -> int:
    settings = settings_from(args, ("state",))
    if isinstance(settings, str):
        return fail(settings)
    try:
        store = open_state(settings.state, create=False)
    except StateError as exc:
        return fail(str(exc))
    try:
        remembered = store.assignments()
    finally:
        store.close()
    # the holder (replica, epoch): which replica serves the client, and how often it changed hands
    rows = [{"client": a.client, "model": a.model, "version": a.version, "max_batch_size": a.max_batch_size,
             "max_delay_us": a.max_delay_us, "failed": a.failed, "replica": a.replica, "epoch": a.epoch,
             "updated": datetime.datetime.fromtimestamp(a.updated_at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            for a in remembered]
    if args.json:
        print(json.dumps(rows))
        return 0
    table = [("CLIENT", "MODEL", "VERSION", "REPLICA", "EPOCH", "UPDATED", "FAILED")]
    table += [(r["client"], r["model"], "" if r["version"] is None else str(r["version"]), r["replica"],
               str(r["epoch"]), r["updated"], r["failed"] or "") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(6)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:6], widths)) + "  " + row[6])
    return 0


def _clear(args: argparse.Namespace) -> int:
    settings = settings_from(args, ("state",))
    if isinstance(settings, str):
        return fail(settings)
    try:
        store = open_state(settings.state, create=False)
    except StateError as exc:
        return fail(str(exc))
    try:
        if store.shared and args.replica is None and not args.all:
            return fail(f"{store.location} is shared by replicas, and running ones drop the clients it forgets: "
                        "pass --replica ID (one replica's clients) or --all")
        count = store.clear_assignments(args.replica)
    finally:
        store.close()
    whose = f" held by replica {args.replica}" if args.replica is not None else ""
    print(f"forgot {count} assignment{'' if count == 1 else 's'}{whose}; "
          f"{'the next start is empty' if not store.shared else 'running replicas drop them'}")
    return 0

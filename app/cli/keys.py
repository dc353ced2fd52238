"""``slotserve keys add|list|revoke``: API keys in the state file. Never imports TensorFlow.

``add`` prints the new key once, alone on stdout (``KEY=$(slotserve keys add alice)``); only its digest is stored.
A running server sees every change on its next request.
"""

import argparse
import datetime
import json
import sys

from app.cli.common import add_state_flag, fail, settings_from
from app.errors import StateError
from app.names import is_valid_name
from app.state import StateStore, create_key, open_state
from app.state.keys import ENV_ADMIN_CLIENT


def add_parser(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="manage API keys (stored hashed in the state file)")
    verbs = keys.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="make a key for a client and print it once")
    add.add_argument("client", help="the client the key acts as")
    add.add_argument("--admin", action="store_true", help="the key may act for every client and see every slot")
    listing = verbs.add_parser("list", help="list the active keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    revoke = verbs.add_parser("revoke", help="revoke a client's keys (refused from the server's next request on)")
    revoke.add_argument("client")
    revoke.add_argument("--id", dest="key_id", help="revoke only this key (an id from keys list)")
    for verb, handler in ((add, _add), (listing, _list), (revoke, _revoke)):
        add_state_flag(verb)
        verb.set_defaults(run=handler)


def _open(args: argparse.Namespace, create: bool = False) -> StateStore | str:
    """The state store named by --state / SLOTSERVE_STATE, or a one-line reason it cannot be opened. Only `add`
    creates a missing file: a mistyped path must not look like a state with no keys."""
    settings = settings_from(args, ("state",))
    if isinstance(settings, str):
        return settings
    try:
        return open_state(settings.state, create)
    except StateError as exc:
        return str(exc)


def _add(args: argparse.Namespace) -> int:
    if not is_valid_name(args.client):
        return fail("a client name is 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit")
    if args.client == ENV_ADMIN_CLIENT and not args.admin:
        return fail(f"'{ENV_ADMIN_CLIENT}' is the client of SLOTSERVE_ADMIN_KEY; give a tenant another name")
    store = _open(args, create=True)
    if isinstance(store, str):
        return fail(store)
    try:
        key, record = create_key(store, args.client, args.admin)
    finally:
        store.close()
    print(key)
    kind = "admin key" if record.admin else "key"
    print(f"{kind} {record.id} for client '{record.client}' stored in {store.location}; "
          "this is the only time it is shown", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _open(args)
    if isinstance(store, str):
        return fail(store)
    try:
        records = store.active_keys()
    finally:
        store.close()
    if args.json:
        print(json.dumps([{"id": r.id, "client": r.client, "admin": r.admin, "created": _when(r.created_at),
                           "last_used": _when(r.last_used_at)} for r in records]))
        return 0
    rows = [("ID", "CLIENT", "ADMIN", "CREATED", "LAST USED")]
    rows += [(r.id, r.client, "yes" if r.admin else "no", _when(r.created_at), _when(r.last_used_at) or "never")
             for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store = _open(args)
    if isinstance(store, str):
        return fail(store)
    try:
        count = store.revoke_keys(args.client, args.key_id)
    finally:
        store.close()
    if not count:
        which = f"key {args.key_id} of client" if args.key_id else "active key for client"
        return fail(f"no {which} '{args.client}' in {store.location}", status=1)
    print(f"revoked {count} key{'s' if count > 1 else ''} of client '{args.client}'")
    return 0


def _when(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""``slotserve status [--url URL] [--key KEY] [--watch [SECONDS]] [--json]``: every slot of a running server, as a
table like ``nvidia-smi``, from ``GET /v1/slots``. Never imports TensorFlow; ``rich`` only once the command runs.

It speaks plain HTTP with the standard library: no redirects are followed (the key must never go to another
address), and answers are read up to a bound. Each refusal is one line naming what to fix: the server is down
(the URL), the key is missing or refused (the server's own words), or whatever answered is not slotserve.
"""

import argparse
import json
import math
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from typing import Any

from app.cli.common import fail

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV, KEY_ENV = "SLOTSERVE_URL", "SLOTSERVE_KEY"
TIMEOUT_S = 10.0
MAX_ANSWER = 16 << 20  # bytes read from one answer, at most (a slot list is a few hundred bytes a slot)
WATCH_S = 2.0


class Refused(Exception):
    """One line saying why the server's answer cannot be shown."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser("status", help="show every slot of a running server, like nvidia-smi",
                                 description="Every slot of a running server: device, state, client, model, "
                                 "memory in use against the slot's limit, peak and residue (from GET /v1/slots).")
    status.add_argument("--url", default=os.environ.get(URL_ENV) or DEFAULT_URL,
                        help=f"the server (default {DEFAULT_URL}; env {URL_ENV})")
    status.add_argument("--key", default=None,
                        help=f"an API key (env {KEY_ENV}, better: a flag is visible to other local users in ps)")
    status.add_argument("--watch", nargs="?", type=_seconds, const=WATCH_S, default=None, metavar="SECONDS",
                        help=f"refresh every SECONDS (default {WATCH_S:g}) until Ctrl-C")
    status.add_argument("--json", action="store_true",
                        help="print the server's slots JSON as it answered, for scripts (one line per refresh)")
    status.set_defaults(run=_run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not math.isfinite(value) or value < 0.1:
        raise argparse.ArgumentTypeError("the refresh interval is at least 0.1 seconds")
    return value


class Server:
    """One slotserve server at ``url``, asked with ``key`` (sent as ``Authorization: Bearer``, never shown)."""

    def __init__(self, url: str, key: str | None) -> None:
        self.url = url
        self.key = key
        self._opener = urllib.request.build_opener(_NoRedirects)

    def slots(self) -> tuple[list[dict[str, Any]], str]:
        """The slot records and the answer's text (for ``--json``); ``Refused`` when there are none to show."""
        text = self._get("/v1/slots")
        try:
            document = json.loads(text)
        except ValueError:
            raise Refused(f"{self.url}/v1/slots did not answer JSON: is it a slotserve server?") from None
        if not _is_slot_list(document):
            raise Refused(f"{self.url}/v1/slots did not answer a slot list: is it a slotserve server?")
        return document["slots"], text

    def version(self) -> str:
        """The server's version, from ``GET /v2`` (server metadata: small, answered to any key); "?" if unknown."""
        try:
            document = json.loads(self._get("/v2"))
        except (Refused, ValueError):
            return "?"
        good = isinstance(document, dict) and document.get("name") == "slotserve"
        return str(document.get("version", "?")) if good else "?"

    def _get(self, path: str) -> str:
        headers = {"Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with self._opener.open(request, timeout=TIMEOUT_S) as response:
                return response.read(MAX_ANSWER).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            with exc:
                raise self._refusal(path, exc.code, exc.read(MAX_ANSWER)) from None
        except urllib.error.URLError as exc:
            raise Refused(self._unreachable(exc.reason)) from None
        except (TimeoutError, socket.timeout):
            raise Refused(f"no answer from {self.url} within {TIMEOUT_S:g} s") from None
        except (HTTPException, ConnectionError) as exc:
            raise Refused(f"{self.url} broke off the answer ({type(exc).__name__}): is it a slotserve server?") \
                from None
        except ValueError:  # http.client refuses a header without sending it; its message would repeat the key
            what = "the key" if self.key else "the request"
            raise Refused(f"{what} cannot be sent in an HTTP header (control or non-Latin-1 characters)") from None

    def _unreachable(self, reason: Any) -> str:
        if isinstance(reason, ConnectionRefusedError):
            return f"cannot reach slotserve at {self.url}: connection refused (is the server running there?)"
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"no answer from {self.url} within {TIMEOUT_S:g} s"
        if isinstance(reason, socket.gaierror):
            return f"cannot reach slotserve at {self.url}: unknown host ({reason.strerror or reason})"
        return f"cannot reach slotserve at {self.url}: {getattr(reason, 'strerror', None) or reason}"

    def _refusal(self, path: str, status: int, body: bytes) -> Refused:
        error = _error_of(body)
        if error is None:
            return Refused(f"{self.url}{path} answered HTTP {status} without slotserve's error body: "
                           "is it a slotserve server?")
        code, message = error
        if status == 401 and not self.key:
            return Refused(f"the server wants a key ({status} {code}: {message}); set {KEY_ENV} or pass --key")
        if status == 401:
            return Refused(f"the server refused the key ({status} {code}: {message})")
        if status == 403:  # a key that may not see slots, or (open mode) a Host the server does not answer
            return Refused(f"the server refused the request ({status} {code}: {message})")
        return Refused(f"{self.url}{path} answered {status} {code}: {message}")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following it would send the key to wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _error_of(body: bytes) -> tuple[str, str] | None:
    """``(code, message)`` of slotserve's error body ``{"error": {"code", "message"}}``, else None."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str) or not isinstance(error.get("message"),
                                                                                               str):
        return None
    return error["code"], error["message"]


def _is_slot_list(document: Any) -> bool:
    """The fields the table shows, with their types (extra fields are welcome: newer servers add some)."""
    if not isinstance(document, dict) or not isinstance(document.get("slots"), list):
        return False
    for slot in document["slots"]:
        if not isinstance(slot, dict) or not isinstance(slot.get("memory"), dict):
            return False
        numbers = [slot.get("slot"), slot.get("residue_bytes")]
        numbers += [slot["memory"].get(k) for k in ("limit_bytes", "in_use_bytes", "peak_bytes")]
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            return False
        if not isinstance(slot.get("device"), str) or not isinstance(slot.get("state"), str):
            return False
        if not all(slot.get(k) is None or isinstance(slot.get(k), str) for k in ("client", "model")):
            return False
    return True


def _server_url(text: str) -> str | None:
    """``http(s)://host[:port][/prefix]`` without a trailing slash, or None when it is not one."""
    try:
        parts = urllib.parse.urlsplit(text.strip())
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return None
    if parts.username or parts.password:
        return None  # a key belongs in SLOTSERVE_KEY, not in a URL that ends up in messages
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _run(args: argparse.Namespace) -> int:
    url = _server_url(args.url)
    if url is None:
        return fail("--url (or SLOTSERVE_URL) is http://HOST[:PORT] or https://..., without user, query or fragment")
    server = Server(url, args.key if args.key is not None else os.environ.get(KEY_ENV) or None)
    try:
        try:
            slots, text = server.slots()
        except Refused as exc:
            return fail(str(exc), status=1)
        if args.watch:
            _stop_on_signals()
        if args.json:
            print(text.strip(), flush=True)
            return _watch_json(server, args.watch) if args.watch else 0
        from app.cli.status_view import show, watch

        version = server.version()
        return watch(server, slots, version, args.watch) if args.watch else show(slots, url, version)
    except KeyboardInterrupt:
        return 0 if args.watch else 130
    except BrokenPipeError:  # `slotserve status --watch | head`: the reader is gone, so is the need to print
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the interpreter flushes stdout at exit
        return 0


def _stop_on_signals() -> None:
    """Ctrl-C ends a watch even where SIGINT was inherited ignored (a job started with ``&``), and SIGTERM ends it
    through the same unwinding, so a live display always gives the terminal its cursor back."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _watch_json(server: Server, every: float) -> int:
    """One JSON line per refresh; a failed refresh is a line on stderr, and the next one is tried."""
    while True:
        time.sleep(every)
        try:
            print(server.slots()[1].strip(), flush=True)
        except Refused as exc:
            fail(f"{exc} (retrying)", status=1)

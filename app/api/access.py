"""Who may call what: API keys when the server has any, else open mode limited to loopback Host and same-origin.

``AccessPolicy`` is built once per app. Authentication is on whenever the state holds a key or
``SLOTSERVE_ADMIN_KEY`` is set, ``--no-auth`` or not; once on it stays on for the process (a key added while
serving turns it on; revoking the last one never turns it off). Open mode serves only requests addressed to a
loopback name (or an allowed host), so a page in the operator's browser cannot reach the server through DNS
rebinding, and refuses state-changing requests whose ``Origin`` is not the server's own origin, so a page of another
site cannot load, swap or unload through a form or a ``text/plain`` POST. Nothing here imports TensorFlow.
"""

import functools
import ipaddress
import logging
import re
from dataclasses import dataclass

from app.errors import Forbidden, Unauthenticated
from app.settings import Settings
from app.state import KeyRing, StateStore

log = logging.getLogger("slotserve.api")

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_AUTHORITY = re.compile(r"(\[[0-9a-f:.]+\]|[^:\[\]]+)(?::([0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


@dataclass(frozen=True)
class Caller:
    """The caller of one request: ``client`` is its key's client (``None`` in open mode, where anyone may act for
    any client, as an admin may)."""

    client: str | None
    admin: bool

    def may_act_for(self, client: str) -> bool:
        return self.admin or self.client == client


OPEN_CALLER = Caller(None, admin=True)


@dataclass(frozen=True)
class RequestHeaders:
    """The headers access depends on, each as every value the request sent (two of one is refused)."""

    method: str
    scheme: str
    host: list[str]
    origin: list[str]
    authorization: list[str]

    @classmethod
    def of(cls, scope: dict) -> "RequestHeaders":
        """From an ASGI scope, in one pass over its raw headers (this runs on every request)."""
        found: dict[bytes, list[str]] = {b"host": [], b"origin": [], b"authorization": []}
        for name, value in scope["headers"]:
            if name in found:
                found[name].append(value.decode("latin-1"))
        return cls(scope["method"], scope["scheme"], found[b"host"], found[b"origin"], found[b"authorization"])


class AccessPolicy:
    """Decides, per request, who the caller is (or refuses it)."""

    def __init__(self, settings: Settings, keys: KeyRing) -> None:
        self.keys = keys
        self.allowed_hosts = frozenset(settings.allowed_hosts)
        self._explicit_hosts = bool(settings.allowed_hosts)
        self._authenticating = keys.has_keys()

    def authenticating(self) -> bool:
        """Whether requests need a key: turned on for good when a key appears in the state while serving."""
        if not self._authenticating and self.keys.has_keys():
            log.warning("an API key was added to the state: authentication is now on")
            self._authenticating = True
        return self._authenticating

    def caller(self, request: RequestHeaders) -> Caller:
        """The caller of a request; raises ``Unauthenticated`` or ``Forbidden``. Messages never repeat a header."""
        if self.authenticating():
            if self._explicit_hosts:
                self._check_host(request.host)
            return Caller(*self._principal(request.authorization))
        self._check_host(request.host)
        if request.method not in SAFE_METHODS and request.origin and not _same_origin(request):
            raise Forbidden("Requests that change state are refused from another site's page (Origin).")
        return OPEN_CALLER

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one policy per app; Host values repeat
    def _host_allowed(self, host: str) -> bool:
        name = _authority(host)[0]
        return name is not None and (is_loopback(name) or name in self.allowed_hosts or "*" in self.allowed_hosts)

    def _principal(self, authorization: list[str]) -> tuple[str, bool]:
        if len(authorization) > 1:
            raise Unauthenticated("Send one Authorization header.")
        scheme, _, key = authorization[0].partition(" ") if authorization else ("", "", "")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("This server needs an API key: send 'Authorization: Bearer <key>'.")
        principal = self.keys.authenticate(key.strip())
        if principal is None:
            raise Unauthenticated("The API key is not valid (unknown or revoked).")
        return principal.client, principal.admin

    def _check_host(self, host: list[str]) -> None:
        if len(host) != 1 or not self._host_allowed(host[0]):
            raise Forbidden("This server answers only requests addressed to a loopback name or an allowed host "
                            "(see --allowed-hosts).")


def is_loopback(host: str) -> bool:
    """True for a loopback address or name (127.0.0.0/8, ::1, localhost and names under .localhost)."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or (host.endswith(".localhost") and _NAME.fullmatch(host)):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def startup_refusal(settings: Settings, state: StateStore) -> str | None:
    """Why the server must not start as configured (no key, not loopback, no ``--no-auth``), or ``None``."""
    if settings.no_auth or settings.admin_key or state.active_keys() or is_loopback(settings.host):
        return None
    return (f"refusing to serve {settings.host} without authentication: add a key "
            f"(slotserve keys add CLIENT --state {state.location}), set SLOTSERVE_ADMIN_KEY, "
            "or pass --no-auth to serve it open on purpose")


def startup_notice(settings: Settings, policy: AccessPolicy) -> str | None:
    """The one warning line for a server that runs without authentication, or ``None``."""
    if policy.authenticating():
        return None
    hosts = ", ".join(sorted(policy.allowed_hosts)) or "none"
    why = "--no-auth was given" if settings.no_auth else f"the state {policy.keys.location} holds no API key"
    return (f"serving WITHOUT authentication ({why}): only requests addressed to loopback names are answered "
            f"(allowed hosts besides: {hosts}) and state changes from other sites' pages are refused; "
            "adding a key (slotserve keys add CLIENT) turns authentication on at once")


def _authority(value: str) -> tuple[str | None, str | None]:
    """(host name, port) of ``name[:port]`` or ``[v6]:port``; ``(None, None)`` for anything else."""
    match = _AUTHORITY.fullmatch(value.strip().lower())
    if match is None:
        return None, None
    name = match.group(1)
    if name.startswith("["):
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None, None
        return name[1:-1], match.group(2)
    return (name, match.group(2)) if _NAME.fullmatch(name) else (None, None)


def _same_origin(request: RequestHeaders) -> bool:
    """Whether the one ``Origin`` is this server's own origin: the same scheme, host and port as the request."""
    if len(request.origin) != 1 or len(request.host) != 1:
        return False
    scheme, sep, authority = request.origin[0].partition("://")
    if not sep or scheme.lower() != request.scheme:
        return False
    origin_host, origin_port = _authority(authority)
    host, port = _authority(request.host[0])
    default = _DEFAULT_PORTS.get(request.scheme)
    return origin_host is not None and (origin_host, origin_port or default) == (host, port or default)

"""Who may call what: API keys when the server has any, else open mode limited to loopback Host and Origin.

``AccessPolicy`` is built once per app. Authentication is on when the state holds a key or ``SLOTSERVE_ADMIN_KEY`` is
set, and once on it stays on for the process (a key added while serving turns it on; revoking the last one never
turns it off). Open mode serves only requests addressed to a loopback name (or an allowed host), so a page in the
operator's browser cannot reach the server through DNS rebinding, and refuses state-changing requests whose
``Origin`` is another site. Nothing here imports TensorFlow.
"""

import ipaddress
import logging
import re
from dataclasses import dataclass

from app.errors import Forbidden, Unauthenticated
from app.settings import Settings
from app.state import KeyRing

log = logging.getLogger("slotserve.api")

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """The caller of one request: ``client`` is its key's client (``None`` in open mode, where anyone may act for
    any client, as an admin may)."""

    client: str | None
    admin: bool

    def may_act_for(self, client: str) -> bool:
        return self.admin or self.client == client


OPEN_CALLER = Caller(None, admin=True)


class AccessPolicy:
    """Decides, per request, who the caller is (or refuses it)."""

    def __init__(self, settings: Settings, keys: KeyRing) -> None:
        self.keys = keys
        self.no_auth = settings.no_auth
        self.allowed_hosts = frozenset(settings.allowed_hosts)
        self._explicit_hosts = bool(settings.allowed_hosts)
        self._authenticating = not self.no_auth and keys.has_keys()

    @property
    def authenticating(self) -> bool:
        """Whether requests need a key. Turns on, never off, when a key appears in the state while serving."""
        if not self._authenticating and not self.no_auth and self.keys.has_keys():
            log.warning("an API key was added: authentication is now on")
            self._authenticating = True
        return self._authenticating

    def caller(self, method: str, host: str | None, origin: str | None, bearer: str | None) -> Caller:
        """The caller of a request, from its method, ``Host``, ``Origin`` and bearer key; raises ``Unauthenticated``
        or ``Forbidden``. Messages never repeat a header's value."""
        if self.authenticating:
            if self._explicit_hosts:
                self._check_host(host)
            if not bearer:
                raise Unauthenticated("This server needs an API key: send 'Authorization: Bearer <key>'.")
            principal = self.keys.authenticate(bearer)
            if principal is None:
                raise Unauthenticated("The API key is not valid (unknown or revoked).")
            return Caller(principal.client, principal.admin)
        self._check_host(host)
        if method not in SAFE_METHODS and origin is not None and not self._allowed(_hostname(origin, url=True)):
            raise Forbidden("Requests that change state are refused from another site's page (Origin).")
        return OPEN_CALLER

    def _check_host(self, host: str | None) -> None:
        if not self._allowed(_hostname(host)):
            raise Forbidden("This server answers only requests addressed to a loopback name or an allowed host "
                            "(see --allowed-hosts).")

    def _allowed(self, hostname: str | None) -> bool:
        if hostname is None:
            return False
        return is_loopback(hostname) or hostname in self.allowed_hosts or "*" in self.allowed_hosts


def is_loopback(host: str) -> bool:
    """True for a loopback address or name (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def startup_refusal(settings: Settings, keys: KeyRing) -> str | None:
    """Why the server must not start as configured (no key, not loopback, no ``--no-auth``), or ``None``."""
    if settings.no_auth or keys.has_keys() or is_loopback(settings.host):
        return None
    return (f"refusing to serve {settings.host} without authentication: add a key "
            f"(slotserve keys add CLIENT --state {settings.state}), set SLOTSERVE_ADMIN_KEY, "
            "or pass --no-auth to serve it open on purpose")


def startup_notice(settings: Settings, policy: AccessPolicy) -> str | None:
    """The one warning line for a server that runs without authentication, or ``None``."""
    if policy.authenticating:
        return None
    hosts = ", ".join(sorted(policy.allowed_hosts)) or "none"
    why = "--no-auth was given" if settings.no_auth else f"the state file {settings.state} holds no API key"
    return (f"serving WITHOUT authentication ({why}): only requests addressed to loopback names are answered "
            f"(allowed hosts besides: {hosts}) and cross-site state changes are refused; "
            "add a key with: slotserve keys add CLIENT")


_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?")


def _hostname(value: str | None, url: bool = False) -> str | None:
    """The host name of a ``Host`` header (``name[:port]``) or of an ``Origin`` (``scheme://name[:port]``);
    ``None`` for anything else (no user info, no path, no odd characters: ``null`` included)."""
    if not value:
        return None
    if url:
        scheme, _, value = value.partition("://")
        if scheme.lower() not in ("http", "https"):
            return None
    match = _HOST.fullmatch(value)
    return match.group(1).strip("[]").lower() if match else None

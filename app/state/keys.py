"""API keys: made once, shown once, stored as a digest; checked against a cache that follows the store.

A key is ``ssk_<client>~<secret>``: 256 random bits, URL-safe, after the client it belongs to. The client part is a
routing hint only (an ingress hashes on it so all of a tenant's requests reach one replica: deploy/nginx/); who a
key belongs to is decided by its digest alone, so a forged prefix gains nothing. Only its SHA-256 digest is stored:
the key has far too much entropy to be guessed from its digest, so a slow password hash would only slow every
request. A presented key is hashed and looked up by digest; the timing of that lookup depends on the digest, which an
attacker cannot steer towards a real key, and the environment's admin key is compared digest to digest with
``hmac.compare_digest``.
"""

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass

from app.state.base import KeyConflict, KeyRecord, StateStore

KEY_PREFIX = "ssk_"
ENV_ADMIN_CLIENT = "admin"  # the client an admin key from SLOTSERVE_ADMIN_KEY acts as by default


@dataclass(frozen=True)
class Principal:
    """Who a key belongs to: one client, which may act for every client when ``admin``."""

    client: str
    admin: bool
    key_id: str


def key_digest(key: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def create_key(store: StateStore, client: str, admin: bool = False) -> tuple[str, KeyRecord]:
    """Make a new key for ``client`` and store its digest; return (the key, which is never stored, and its record)."""
    for _ in range(5):
        key = f"{KEY_PREFIX}{client}~{secrets.token_urlsafe(32)}"
        record = KeyRecord(secrets.token_hex(6), client, admin, key_digest(key), time.time())
        try:
            store.add_key(record)
        except KeyConflict:  # 48-bit ids: a clash is rare, and the next draw will not clash
            continue
        return key, record
    raise KeyConflict("could not draw an unused key id")


class KeyRing:
    """The server's keys: the store's, cached by digest and re-read whenever the store changes (so a key revoked
    by ``slotserve keys revoke`` in another process is refused on the next request), plus an optional admin key
    from the environment. Last uses are kept in memory and written by ``flush``."""

    def __init__(self, store: StateStore, admin_key: str | None = None) -> None:
        self._store = store
        self.location = store.location  # for messages: a path, or a URL without its password
        self._admin_digest = key_digest(admin_key) if admin_key else None
        self._by_digest: dict[str, KeyRecord] = {}
        self._marker: Hashable = None
        self._used: dict[str, float] = {}
        self._used_lock = threading.Lock()
        self.refresh()

    def authenticate(self, key: str) -> Principal | None:
        """The principal ``key`` belongs to, or ``None`` for an unknown or revoked key."""
        digest = key_digest(key)
        if self._admin_digest is not None and hmac.compare_digest(digest, self._admin_digest):
            return Principal(ENV_ADMIN_CLIENT, True, "env")
        self.refresh()
        record = self._by_digest.get(digest)
        if record is None or not hmac.compare_digest(record.digest, digest):
            return None
        with self._used_lock:
            self._used[record.id] = time.time()
        return Principal(record.client, record.admin, record.id)

    def has_keys(self) -> bool:
        """Whether any key can authenticate (a stored one, or the environment's)."""
        self.refresh()
        return self._admin_digest is not None or bool(self._by_digest)

    def refresh(self) -> None:
        """Re-read the keys if the store changed since the last read (one cheap query otherwise)."""
        marker = self._store.change_marker()
        if marker != self._marker:
            self._by_digest = {record.digest: record for record in self._store.active_keys()}
            self._marker = marker

    def flush(self) -> None:
        """Write the last uses seen since the previous flush (called off the event loop, now and then)."""
        with self._used_lock:
            used, self._used = self._used, {}
        self._store.record_key_use(used)

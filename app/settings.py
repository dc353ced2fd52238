"""Server configuration: one pydantic-settings class, built once and passed down (never a global)."""

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 1 << 20
MIN_ADMIN_KEY_CHARS = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Every knob of the server. Environment variables use the prefix ``SLOTSERVE_``."""

    model_config = SettingsConfigDict(env_prefix="SLOTSERVE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address uvicorn binds to.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port uvicorn binds to.")
    model_dir: Path = Field(Path("models"), description="Directory holding the model store.")
    slots: int = Field(4, ge=1, le=256, description="Slots per GPU (or in total on a CPU-only host).")
    slot_memory_mb: int = Field(1024, ge=1, description="Memory per slot in MiB (2^20 bytes).")
    gpu_headroom_mb: int = Field(
        512, ge=0, description="MiB each GPU keeps outside its slots (CUDA context, cuDNN/cuBLAS workspaces): "
        "slots x slot memory + headroom must fit every GPU. Ignored on a CPU-only host.")
    device: Literal["auto", "gpu", "cpu"] = Field(
        "auto", description="'auto' uses every GPU when one exists, else logical CPUs."
    )
    admission_margin: float = Field(
        0.10, ge=0.0, le=10.0, description="Fraction added to a model's weight bytes when estimating its footprint."
    )
    max_rows: int = Field(65536, ge=1, description="Largest number of rows one predict request may carry.")
    max_body_mb: int = Field(64, ge=1, description="Largest request body in MiB; larger ones get 413 unread.")
    max_batch_size: int = Field(
        64, ge=1, description="Most rows stacked into one call of a model's function (dynamic batching)."
    )
    max_delay_us: int = Field(
        0, ge=0, le=1_000_000,
        description="Microseconds a batch waits for batchmates; 0 never waits (batches still form under load).",
    )
    request_memory_mb: int | None = Field(
        None, ge=1, description="Memory for requests in flight (bodies and what decoding them allocates), in MiB; "
        "a request that would exceed it waits briefly, then gets 429. Default: an eighth of the host's RAM.")
    client_memory_share: float = Field(
        0.5, gt=0, le=1, description="The largest share of request_memory_mb one client's requests may hold.")
    max_client_requests: int = Field(512, ge=1, description="Requests with a body one client may have in flight.")
    budget_wait_s: float = Field(
        1.0, ge=0, le=60, description="How long a request waits for request memory before 429 too_many_requests.")
    body_timeout_s: float = Field(
        30.0, gt=0, description="How long a request body may take to arrive before 408 request_timeout.")
    header_timeout_s: float = Field(
        10.0, gt=0, description="How long a connection may take to send a request's headers before it is closed.")
    keep_alive_s: float = Field(
        5.0, gt=0, le=3600, description="How long an idle HTTP connection stays open. Behind a proxy that keeps "
        "connections to this server (nginx, ingress-nginx: 60 s), make it longer than the proxy's, so the proxy "
        "never sends a request on a connection this server is closing.")
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="On SIGTERM: how long in-flight requests may finish before they are cancelled.")
    busy_timeout_s: float = Field(
        30.0, gt=0, description="How long a prediction waits for a slot that is swapping before 503 slot_busy."
    )
    log_level: str = Field("info", description="Logging level: debug, info, warning, error or critical (any case).")
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines (the app's, uvicorn's and the access log) as text, or one JSON object per "
        "line with time, level, logger, message and request_id.")
    access_log: bool = Field(True, description="Log one line per request (logger slotserve.access, at info level).")
    trust_savedmodel_ops: bool = Field(
        False, description="Load SavedModels whose graphs would run file, Python-callback or remote ops "
        "(ReadFile, WriteFile, PyFunc...). Off: such a model is refused with 422 model_unsafe.")
    state: str = Field("slotserve.db", description="Where API keys and every client's assignment are kept (put "
                       "back at start-up): a SQLite file, created when missing, or a PostgreSQL URL "
                       "(postgresql://user@host/db) shared by every replica.")
    replica_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._-]+$",
                            description="This server's name in a shared state store (default: the host name): "
                            "each assignment records the replica that holds it. Give every replica its own.")
    ownership_check_s: float = Field(
        5.0, ge=0.1, le=3600, description="How often this replica checks, in the state store, that it still holds "
        "its clients (another replica may have taken one over); a client it lost is dropped then (or on its next "
        "request, once unchecked for twice this long).")
    forget: bool = Field(False, description="Start empty: forget every remembered assignment (keys stay).")
    admin_key: SecretStr | None = Field(
        None, description=f"An admin API key from the environment (at least {MIN_ADMIN_KEY_CHARS} characters), "
        "acting as client 'admin'; for containers. Turns authentication on.")
    no_auth: bool = Field(
        False, description="Start without keys even on a non-loopback address, on purpose. Keys, when there are "
        "any, still win: authentication is on whenever the state holds a key or an admin key is set.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host names accepted besides loopback ones when serving without keys "
        "(comma-separated; '*' accepts any). Also enforced with keys when given.")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        # checked here, not when logging is configured: a typo is a one-line refusal, never a traceback at start-up
        if level.strip().upper() not in LOG_LEVELS:
            raise ValueError(f"the log level is one of {', '.join(name.lower() for name in LOG_LEVELS)}")
        return level.strip().lower()

    @field_validator("admin_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(f"the admin key must be at least {MIN_ADMIN_KEY_CHARS} characters "
                             "(slotserve keys add CLIENT --admin makes a strong one)")
        return key

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        hosts = value.split(",") if isinstance(value, str) else value
        if not isinstance(hosts, list):
            return value
        cleaned = [str(host).strip().lower().removeprefix("[").removesuffix("]") for host in hosts]
        cleaned = [host for host in cleaned if host]
        if not all(host == "*" or _is_host(host) for host in cleaned):
            raise ValueError("allowed hosts are host names or IP addresses, without a port or a path, or '*'")
        return cleaned

    @property
    def slot_memory_bytes(self) -> int:
        """The per-slot limit in bytes, exactly ``slot_memory_mb`` x 2^20."""
        return self.slot_memory_mb * MIB

    @property
    def request_memory_bytes(self) -> int:
        """The request budget in bytes: ``request_memory_mb``, or an eighth of the host's RAM."""
        if self.request_memory_mb is not None:
            return self.request_memory_mb * MIB
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 8


_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_NAME.fullmatch(host))

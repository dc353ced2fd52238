"""One exception hierarchy. Every error has a stable code and an HTTP status; no web framework is imported."""

from http import HTTPStatus
from typing import Any, ClassVar


class SlotServeError(Exception):
    """Base of every error the server reports to a client."""

    code: ClassVar[str] = "internal"
    status: ClassVar[HTTPStatus] = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON body: ``{"error": {"code", "message", ...details}}``."""
        return {"error": {"code": self.code, "message": self.message, **self.details}}

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with this error on every protocol (``Retry-After``, ``WWW-Authenticate``...)."""
        return {}


class InvalidRequest(SlotServeError):
    code = "invalid_request"
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class Unauthenticated(SlotServeError):
    """No API key, or one the server does not know (or that was revoked)."""

    code = "unauthenticated"
    status = HTTPStatus.UNAUTHORIZED

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="slotserve"'}


class Forbidden(SlotServeError):
    """A known caller acting on what is not its own, or a request the open mode refuses (Host, Origin)."""

    code = "forbidden"
    status = HTTPStatus.FORBIDDEN


class InvalidInput(SlotServeError):
    code = "invalid_input"
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class ModelInvalid(SlotServeError):
    code = "model_invalid"
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class ModelUnsafe(SlotServeError):
    """A SavedModel whose graph would touch files, run Python or reach out (see ``graph_check``)."""

    code = "model_unsafe"
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class OutputNotFinite(SlotServeError):
    """The model answered NaN or an infinity, which JSON cannot carry (binary V2 outputs can)."""

    code = "output_not_finite"
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class ModelNotFound(SlotServeError):
    code = "model_not_found"
    status = HTTPStatus.NOT_FOUND


class ClientNotFound(SlotServeError):
    code = "client_not_found"
    status = HTTPStatus.NOT_FOUND


class ModelNotLoaded(SlotServeError):
    """A protocol route named a model the calling client has not loaded."""

    code = "model_not_loaded"
    status = HTTPStatus.NOT_FOUND


class NotFound(SlotServeError):
    code = "not_found"
    status = HTTPStatus.NOT_FOUND


class MethodNotAllowed(SlotServeError):
    code = "method_not_allowed"
    status = HTTPStatus.METHOD_NOT_ALLOWED


class PayloadTooLarge(SlotServeError):
    code = "payload_too_large"
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class RequestTimeout(SlotServeError):
    """The body did not arrive in time (a client trickling it)."""

    code = "request_timeout"
    status = HTTPStatus.REQUEST_TIMEOUT


class ClientDisconnected(SlotServeError):
    """The client went away before its body arrived; nobody reads this answer, but logs and counters do."""

    code = "client_disconnected"
    status = HTTPStatus.BAD_REQUEST


class TooManyRequests(SlotServeError):
    """The server's budget for requests in flight (memory, or the client's share of it) is spent: retry later."""

    code = "too_many_requests"
    status = HTTPStatus.TOO_MANY_REQUESTS
    retry_after_s: int = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class ServerStopping(SlotServeError):
    """The server is shutting down: requests still running past the shutdown bound are cancelled with this."""

    code = "server_stopping"
    status = HTTPStatus.SERVICE_UNAVAILABLE

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class NoFreeSlot(SlotServeError):
    code = "no_free_slot"
    status = HTTPStatus.SERVICE_UNAVAILABLE


class SlotBusy(SlotServeError):
    code = "slot_busy"
    status = HTTPStatus.SERVICE_UNAVAILABLE
    retry_after_s: int = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class StateUnavailable(SlotServeError):
    """The shared state store (PostgreSQL) cannot be reached or failed: loads, unloads and takeovers wait for it;
    predictions for the clients a replica holds do not need it."""

    code = "state_unavailable"
    status = HTTPStatus.SERVICE_UNAVAILABLE

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "2"}


class ModelTooLarge(SlotServeError):
    code = "model_too_large"
    status = HTTPStatus.INSUFFICIENT_STORAGE


class SlotOutOfMemory(SlotServeError):
    code = "slot_out_of_memory"
    status = HTTPStatus.INSUFFICIENT_STORAGE


class PlanError(Exception):
    """The partition plan cannot be applied (it does not fit, or TF is already initialised). Start-up only."""


class StateError(Exception):
    """The state store cannot be opened or migrated (bad path, newer schema, unreachable database)."""

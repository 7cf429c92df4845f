"""One exception tree for seekstack, translated once at each edge.

    SeekstackError                  500 server_error          (base; never raised bare)
     ├─ ConfigError                 400 invalid_request_error (bad seekstack.yaml / settings)
     ├─ InvalidRequestError         400 invalid_request_error (bad JSON, bad field values)
     │   ├─ ContextLengthError      400 context_length_exceeded
     │   └─ UnsupportedError        400 unsupported (capability the model lacks)
     ├─ ValidationFailed            400 invalid_request_error (wrong types, missing or unknown fields)
     ├─ AuthenticationError         401 invalid_api_key       (missing, unknown, expired or revoked key)
     ├─ PermissionDeniedError       403 permission_denied     (the key's role or allow-list says no)
     ├─ NotFoundError               404 not_found             (an admin object; never says whose)
     │   └─ ModelNotFoundError      404 model_not_found
     ├─ ConflictError               409 conflict              (an admin object that already exists)
     ├─ RateLimitError              429 rate_limit_exceeded   (a quota; Retry-After and x-ratelimit-* set)
     ├─ OverloadedError             429 model_overloaded      (the model's queue is full; Retry-After set)
     ├─ PayloadTooLargeError        413 payload_too_large
     ├─ RequestTimeoutError         408 request_timeout       (the body stopped arriving)
     ├─ EngineUnavailableError      503 engine_unavailable    (Retry-After set)
     ├─ AuditUnavailableError       503 audit_unavailable     (fail-closed: nothing served unaudited)
     ├─ StorageUnavailableError     503 storage_unavailable   (the governance database or Redis cannot be reached)
     ├─ EngineError                 502 engine_error          (engine answered with garbage)
     └─ ServerUnreachableError      503 server_unreachable    (CLI: no gateway at that URL)

The gateway turns each into OpenAI error JSON with the status above
(``gateway/errors.py``); the CLI prints ``error: <message>`` and, on the next
line, the fix (``cli/__init__.py``). Code raises typed errors only, never returns them.
"""

from __future__ import annotations

__all__ = [
    "SeekstackError",
    "ConfigError",
    "InvalidRequestError",
    "ContextLengthError",
    "UnsupportedError",
    "ValidationFailed",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ModelNotFoundError",
    "ConflictError",
    "RateLimitError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RequestTimeoutError",
    "EngineUnavailableError",
    "AuditUnavailableError",
    "EngineError",
]


class SeekstackError(Exception):
    status: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, fix: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.param = param

    def headers(self) -> dict[str, str]:
        return {}


class ConfigError(SeekstackError):
    status, error_type, code = 400, "invalid_request_error", "invalid_config"


class InvalidRequestError(SeekstackError):
    status, error_type, code = 400, "invalid_request_error", "invalid_request"


class ContextLengthError(InvalidRequestError):
    code = "context_length_exceeded"


class UnsupportedError(InvalidRequestError):
    code = "unsupported"


class ValidationFailed(SeekstackError):
    status, error_type, code = 400, "invalid_request_error", "invalid_parameters"


class AuthenticationError(SeekstackError):
    status, error_type, code = 401, "authentication_error", "invalid_api_key"


class PermissionDeniedError(SeekstackError):
    status, error_type, code = 403, "permission_error", "permission_denied"


class NotFoundError(SeekstackError):
    status, error_type, code = 404, "invalid_request_error", "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class ConflictError(SeekstackError):
    status, error_type, code = 409, "invalid_request_error", "conflict"


class PayloadTooLargeError(SeekstackError):
    status, error_type, code = 413, "invalid_request_error", "payload_too_large"


class RequestTimeoutError(SeekstackError):
    status, error_type, code = 408, "invalid_request_error", "request_timeout"


class EngineUnavailableError(SeekstackError):
    status, error_type, code = 503, "server_error", "engine_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimitError(SeekstackError):
    status, error_type, code = 429, "rate_limit_error", "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int = 1, limit_headers: dict[str, str] | None = None,
                 scope: str = "", limit: str = "", **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.limit_headers = limit_headers or {}
        self.scope, self.limit = scope, limit  # which quota refused: ("team", "tokens_per_minute")

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after), **self.limit_headers}


class OverloadedError(SeekstackError):
    """A model's queue is full, or a request waited in it too long: refused at once, retry later."""

    status, error_type, code = 429, "rate_limit_error", "model_overloaded"

    def __init__(self, message: str, *, retry_after: int = 1, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class AuditUnavailableError(SeekstackError):
    status, error_type, code = 503, "server_error", "audit_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "30"}


class StorageUnavailableError(SeekstackError):
    status, error_type, code = 503, "server_error", "storage_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


__all__.append("StorageUnavailableError")


class EngineError(SeekstackError):
    status, error_type, code = 502, "server_error", "engine_error"


class ServerUnreachableError(SeekstackError):
    status, error_type, code = 503, "server_error", "server_unreachable"


__all__.append("ServerUnreachableError")


def first_line(exc: BaseException) -> str:
    """An outside failure (a database driver's, a socket's) in one line, for a message or a log."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

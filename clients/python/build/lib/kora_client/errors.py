"""The errors a call can raise: one class per kind of answer, all under `KoraError`.

The gateway answers every failed request with `{"error": {"code", "message", "details"?}}`;
the class is chosen by the HTTP status, the `code` and `message` are the gateway's.
"""

from __future__ import annotations

from typing import Any, Optional


class KoraError(Exception):
    """A request the gateway refused or could not answer."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id
        self.retry_after = retry_after


class Unauthenticated(KoraError):
    """401: no credential, or one that is malformed, unknown, expired or revoked."""


class Forbidden(KoraError):
    """403: the credential's role lacks the scope, or its address may not use the route."""


class NotFound(KoraError):
    """404: no such resource in the credential's tenant."""


class Conflict(KoraError):
    """409: the resource is not in a state that allows the call (a run still running...)."""


class Invalid(KoraError):
    """400 or 422: the request is malformed, or the workflow it names is not valid."""


class PayloadTooLarge(KoraError):
    """413: the body is over the gateway's limit."""


class RateLimited(KoraError):
    """429: too many requests, or the tenant's quota is spent; `retry_after` says when to retry."""


class Unavailable(KoraError):
    """503 or 504: the gateway cannot reach the engine now, or the call timed out."""


class ConnectionFailed(KoraError):
    """The gateway could not be reached at all (status 0)."""


_BY_STATUS = {
    400: Invalid,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Invalid,
    429: RateLimited,
    503: Unavailable,
    504: Unavailable,
}


def error_for(
    status: int,
    body: Any,
    request_id: Optional[str] = None,
    retry_after: Optional[float] = None,
) -> KoraError:
    """The error for a failed answer with this status and (parsed JSON, or raw) body."""
    code, message, details = "http_error", f"HTTP {status}", None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code", code))
        message = str(err.get("message", message))
        details = err.get("details")
    elif isinstance(body, str) and body:
        message = body[:500]
    cls = _BY_STATUS.get(status, KoraError)
    return cls(status, code, message, details, request_id, retry_after)


class RunTimeout(KoraError, TimeoutError):
    """The run did not end within the time a `wait` or `run` was given (it goes on running)."""

    def __init__(self, run_id: str, timeout: float, status: str) -> None:
        super().__init__(
            0, "timeout", f"run {run_id} is still {status} after {timeout:g} s; wait() again"
        )
        self.run_id = run_id
        self.run_status = status

"""The gateway's error contract, in one place.

Every failure the API reports is a ``GatewayError``: an HTTP status, a machine-readable code,
a sentence for people, optional ``details``, the invocation status it records, and the headers
it needs (``Retry-After``, ``WWW-Authenticate``). Every error body, early refusals included, is
built by ``error_body``:

    {"error": {"code": ..., "message": ..., "details": ...?}, ...extra}

where ``extra`` is what the answering edge adds (``invocation_id``, ``worker_id``,
``timings_ms`` for invocations).
"""

from __future__ import annotations

from typing import Any, ClassVar

from platform_core.invocations.models import Status


def error_body(code: str, message: str, *, details: Any = None, **extra: Any) -> dict[str, Any]:
    """The one shape of every error answer of the API."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error, **extra}


class GatewayError(Exception):
    http_status: int = 500
    code: str = "internal_error"
    status: Status = Status.ERROR
    retry_after: int | None = None
    extra_headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self, message: str, *, code: str | None = None, details: Any = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if retry_after is not None:
            self.retry_after = retry_after
        self.details = details

    def body(self, **extra: Any) -> dict[str, Any]:
        return error_body(self.code, self.message, details=self.details, **extra)

    @property
    def headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers


# --- the request itself -----------------------------------------------------------------


class BadRequest(GatewayError):
    """400: the HTTP request is malformed (a host we do not serve, a broken request line)."""

    http_status, code, status = 400, "bad_request", Status.REJECTED


class Unauthenticated(GatewayError):
    """401: no API key, or not a valid one. Not recorded: it is nobody's invocation."""

    http_status, code, status = 401, "unauthenticated", Status.REJECTED
    extra_headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="plugin-platform"'}

    def __init__(self, message: str = "send an API key: 'Authorization: Bearer pp_...' (manage.py createapikey)"):
        super().__init__(message)


class Forbidden(GatewayError):
    """403: the caller may not use this endpoint (e.g. /metrics from beyond loopback without METRICS_TOKEN)."""

    http_status, code, status = 403, "forbidden", Status.REJECTED


class NotFound(GatewayError):
    """404: no API endpoint (or no resource of the caller's) at this path."""

    http_status, code, status = 404, "not_found", Status.REJECTED


class MethodNotAllowed(GatewayError):
    http_status, code, status = 405, "method_not_allowed", Status.REJECTED


class InvalidParameter(GatewayError):
    """400: a query parameter of a read endpoint is out of range."""

    http_status, code, status = 400, "invalid_parameter", Status.REJECTED


class RequestTooLarge(GatewayError):
    """413: the body is larger than API_MAX_BODY_BYTES (it is not read past that)."""

    http_status, code, status = 413, "request_too_large", Status.REJECTED


class HeadersTooLarge(GatewayError):
    """431: the request line or headers are larger than the server reads."""

    http_status, code, status = 431, "headers_too_large", Status.REJECTED


class Throttled(GatewayError):
    """429: the tenant is over its rate (``rate_limited``) or concurrency (``too_many_concurrent``) quota."""

    http_status, code, status, retry_after = 429, "rate_limited", Status.THROTTLED, 1


# --- the invocation -----------------------------------------------------------------------


class InvalidInput(GatewayError):
    """400: the request is malformed or its arguments break the plugin's input schema."""

    http_status, code, status = 400, "invalid_input", Status.REJECTED


class UnknownPlugin(GatewayError):
    http_status, code, status = 404, "unknown_plugin", Status.REJECTED


class SupervisorUnavailable(GatewayError):
    """503: no supervisor for the plugin's runtime is configured or reachable."""

    http_status, code, status, retry_after = 503, "supervisor_unavailable", Status.UNAVAILABLE, 5


class NoCapacity(GatewayError):
    """503: the supervisor has no free worker slot (admission control)."""

    http_status, code, status, retry_after = 503, "no_capacity", Status.UNAVAILABLE, 1


class WorkerUnreachable(GatewayError):
    """503: the worker was allocated but the gateway could not connect to it in time (it is
    healthy as far as anyone knows, just overwhelmed): nothing ran, retrying is safe."""

    http_status, code, status, retry_after = 503, "worker_unreachable", Status.UNAVAILABLE, 1


class WorkerStartFailed(GatewayError):
    """502: the worker could not be started or died before it was ready."""

    http_status, code, status = 502, "worker_start_failed", Status.FAILED


class PluginFailed(GatewayError):
    """502: the plugin reported a failure (PPP Failed); ``code`` is the plugin's."""

    http_status, code, status = 502, "plugin_failed", Status.FAILED


class PluginRejectedInput(GatewayError):
    """400: the plugin itself refused the arguments (PPP Failed with code invalid_input)."""

    http_status, code, status = 400, "invalid_input", Status.REJECTED


class WorkerLost(GatewayError):
    """502: the worker crashed or the connection to it broke mid-invocation."""

    http_status, code, status = 502, "worker_lost", Status.FAILED


class MemoryLimitExceeded(GatewayError):
    """502: the worker ran out of its memory limit (killed by the OOM killer, or MemoryError)."""

    http_status, code, status = 502, "memory_limit_exceeded", Status.FAILED


class CpuLimitExceeded(GatewayError):
    """502: the worker used up its CPU time limit and was stopped (SIGXCPU)."""

    http_status, code, status = 502, "cpu_limit_exceeded", Status.FAILED


class InvalidOutput(GatewayError):
    """502: the plugin's result is not JSON, too large, or breaks its output schema."""

    http_status, code, status = 502, "invalid_output", Status.FAILED


class InvocationTimeout(GatewayError):
    http_status, code, status = 504, "timeout", Status.TIMEOUT


class AllocationTimeout(GatewayError):
    http_status, code, status = 504, "allocation_timeout", Status.TIMEOUT


class Cancelled(GatewayError):
    """409: the invocation was cancelled on request (``POST /invocations/{id}/cancel``, MCP)."""

    http_status, code, status = 409, "cancelled", Status.CANCELLED


class AlreadyFinished(GatewayError):
    """409: a cancel request for an invocation that has already finished."""

    http_status, code, status = 409, "invocation_finished", Status.REJECTED


class IdempotencyMismatch(GatewayError):
    """422: an ``Idempotency-Key`` this tenant already used, sent with another request."""

    http_status, code, status = 422, "idempotency_key_reused", Status.REJECTED


class RecordFailed(GatewayError):
    """500: the invocation could not be stored (database unavailable): its outcome is unknown."""

    http_status, code, status = 500, "record_failed", Status.ERROR

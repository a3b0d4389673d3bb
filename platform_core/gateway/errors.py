"""The gateway's error contract: every failure has an HTTP status, a code and a message."""

from __future__ import annotations

from typing import Any

from platform_core.invocations.models import Status


class GatewayError(Exception):
    http_status = 500
    code = "internal_error"
    status = Status.ERROR
    retry_after: int | None = None

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


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

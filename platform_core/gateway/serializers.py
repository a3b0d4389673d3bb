"""JSON shapes of the API's resources."""

from __future__ import annotations

from typing import Any

from platform_core.invocations.models import Invocation
from platform_core.registry.models import PluginSpec


def plugin_json(plugin: PluginSpec, *, schemas: bool = False) -> dict[str, Any]:
    data = {
        "name": plugin.name,
        "operation": plugin.operation,
        "description": plugin.description,
        "runtime": plugin.runtime_id,
        "backend": plugin.backend or None,
        "mode": plugin.mode,
        "timeout_s": plugin.timeout_s,
        "enabled": plugin.enabled,
        "invoke_url": f"/api/v1/plugins/{plugin.name}/invoke",
    }
    if schemas:
        data["input_schema"], data["output_schema"] = plugin.input_schema, plugin.output_schema
    return data


def invocation_json(invocation: Invocation, *, trace: bool = False) -> dict[str, Any]:
    data = {
        "id": str(invocation.id),
        "plugin": invocation.plugin_name,
        "runtime": invocation.runtime,
        "backend": invocation.backend,
        "status": invocation.status,
        "http_status": invocation.http_status,
        "tenant_id": invocation.tenant_id,
        "user_id": invocation.user_id,
        "request_id": invocation.request_id,
        "arguments": invocation.arguments,
        "result": invocation.result,
        "error": {"code": invocation.error_code, "message": invocation.error_message}
        if invocation.error_code
        else None,
        "worker_id": invocation.worker_id,
        "worker_warm": invocation.worker_warm,
        "timings_ms": timings_json(invocation),
        "created_at": invocation.created_at.isoformat(),
        "finished_at": invocation.finished_at.isoformat() if invocation.finished_at else None,
    }
    if trace:
        data["worker_log"] = invocation.worker_log
        data["worker_log_truncated"] = invocation.worker_log_truncated
        data["trace"] = invocation.trace
    return data


def timings_json(invocation: Invocation) -> dict[str, float | None]:
    """An invocation's recorded phase timings, as every answer shows them (``timings_ms``)."""
    return {
        "allocation": invocation.allocation_ms,
        "init": invocation.init_ms,
        "execution": invocation.execution_ms,
        "release": invocation.release_ms,
        "total": invocation.total_ms,
    }

"""The one place an invocation meets observability: when it begins and when it has been recorded.

``invocation_begin``: its place in a distributed trace (the caller's ``traceparent``), its ids on
every log line. ``invocation_end``: counted (Prometheus), its spans queued for export
(OpenTelemetry, when configured), one access-log line (``INVOCATION_LOG=1``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from platform_core.invocations.trace import Trace
from platform_core.observability import logs, metrics, tracing
from platform_core.registry.models import PluginSpec
from platform_core.tenancy.callers import Caller

log = logging.getLogger("platform_core.invocations.access")


def invocation_begin(*, invocation_id: str, caller: Caller, trace: Trace) -> logs.InvocationLog:
    """Join the caller's trace (or start one, when traces are exported); bind the log ids."""
    try:
        propagation = trace.propagation = tracing.propagation_begin(caller.traceparent, caller.tracestate)
        metrics.seats_sampling_start()
    except Exception:  # observability never costs an invocation its answer
        log.exception("invocation %s: tracing could not begin", invocation_id)
        propagation = trace.propagation = None
    return logs.invocation_bind(
        invocation_id=invocation_id,
        tenant_id=caller.tenant_id,
        trace_id=propagation.trace_id_hex if propagation is not None else "",
    )


def invocation_end(
    *,
    trace: Trace,
    bound: logs.InvocationLog,
    caller: Caller,
    plugin: PluginSpec | None,
    status: str,
    http_status: int,
    timings_ms: dict[str, float | None],
    error: Any = None,
    lease: Any = None,
    warm: bool | None = None,
) -> None:
    """Count, trace and log one recorded invocation (``plugin``: its ``PluginSpec``, None when
    none was found; ``error``: its ``GatewayError``; ``lease``: the worker it ran on). Never raises:
    observability never costs an invocation its answer."""
    try:
        _observe(trace, bound, caller, plugin, status, http_status, timings_ms, error, lease, warm)
    except Exception:
        log.exception("invocation %s: could not be counted or traced", trace.invocation_id)
    finally:
        bound.ended = True


def _observe(
    trace: Trace,
    bound: logs.InvocationLog,
    caller: Caller,
    plugin: PluginSpec | None,
    status: str,
    http_status: int,
    timings_ms: dict[str, float | None],
    error: Any,
    lease: Any,
    warm: bool | None,
) -> None:
    name = plugin.name if plugin is not None else ""
    mode = plugin.mode if plugin is not None else ""
    refusal = error.code if error is not None and http_status == 429 else ""
    metrics.invocation_count(
        plugin=name,
        mode=mode,
        status=status,
        http_status=http_status,
        timings_ms=timings_ms,
        refusal=refusal,
        tenant=caller.tenant_id,
    )
    propagation = trace.propagation
    if propagation is not None and propagation.exported:
        attributes = {
            "invocation.id": trace.invocation_id,
            "plugin.name": name,
            "plugin.mode": mode,
            "tenant.id": caller.tenant_id,
            "invocation.status": status,
            "http.response.status_code": http_status,
            "error.type": error.code if error is not None else None,
            "worker.id": lease.worker_id if lease is not None else None,
            "worker.backend": lease.backend if lease is not None else None,
            "worker.warm": warm,
            "worker.host": lease.host_name if lease is not None else None,
            "supervisor.address": lease.supervisor if lease is not None else None,
        }
        tracing.spans_submit(
            tracing.SpanJob(
                propagation=propagation,
                name=f"invoke {name}" if name else "invoke (unknown plugin)",
                server=True,
                started_ns=trace.started_ns,
                events=trace.events,
                attributes=attributes,
                # A failure of ours or of the plugin (5xx); a caller's mistake (4xx) is not the span's.
                error=f"{error.code}: {error.message}" if error is not None and http_status >= 500 else "",
            )
        )
    if settings.PLATFORM_INVOCATION_LOG:
        log.info(
            "invocation %s %s: HTTP %d in %s ms",
            name or "(no plugin)",
            status,
            http_status,
            timings_ms.get("total"),
            extra={"status": status, "http_status": http_status, "total_ms": timings_ms.get("total")},
        )

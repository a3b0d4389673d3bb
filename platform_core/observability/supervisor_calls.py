"""A supervisor's side of observability: its spans join the gateway's trace, its calls are counted.

The gateway sends the ``traceparent`` of its allocation (or release) span with AllocateWorker,
ReleaseWorker and CancelAllocation. When the supervisor exports traces (the same OTEL_* variables),
each such call becomes a server span, child of that span, with the worker's lifecycle as child spans
(spawn, readiness, stop) and events, built from the lifecycle events the call produced.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from platform_core.invocations.trace import Trace
from platform_core.invocations.vocabulary import EventKind
from platform_core.observability import metrics, tracing


def supervisor_call_end(
    *,
    call: str,
    traceparent: str,
    tracestate: str = "",
    started_ns: int,
    events: Sequence[Any],
    attributes: dict[str, Any],
    error: str = "",
) -> None:
    """Export the span of one supervisor call (when traced and exported): ``events`` are the
    supervisor's lifecycle ``Event``s of it, ``error`` why it failed."""
    if not traceparent:
        return
    propagation = tracing.propagation_begin(traceparent, tracestate)
    if propagation is None or not propagation.exported or not propagation.sampled:
        return
    trace = Trace("", publish=False)
    trace.started_ns = started_ns
    for event in events:
        trace.add(EventKind.lifecycle(event.state.name), f"{event.worker_id} {event.detail}", at_ns=event.at_ns)
    tracing.spans_submit(
        tracing.SpanJob(
            propagation=propagation,
            name=f"supervisor {call}",
            server=True,
            started_ns=started_ns,
            ended_ns=time.time_ns(),
            events=trace.events,
            attributes=attributes,
            error=error,
        )
    )


def allocation_end(
    *, request: Any, started_ns: int, supervisor: Any, allocation: Any = None, error: Exception | None = None
) -> None:
    """Count and trace one AllocateWorker call (``allocation``: what it gave; ``error``: why not)."""
    plugin = request.plugin.name
    events = list(allocation.events) if allocation is not None else []
    worker = allocation.worker if allocation is not None else None
    outcome = type(error).__name__ if error is not None else ("warm" if allocation.warm else "cold")
    metrics.allocation_count(plugin=plugin, outcome=outcome, events=events, backend=worker.backend if worker else "")
    supervisor_call_end(
        call="AllocateWorker",
        traceparent=request.context.traceparent,
        tracestate=request.context.tracestate,
        started_ns=started_ns,
        events=events,
        attributes={
            "plugin.name": plugin,
            "tenant.id": request.tenant_id,
            "supervisor.id": supervisor.supervisor_id,
            "runtime": supervisor.runtime,
            "worker.id": worker.worker_id if worker else None,
            "worker.backend": worker.backend if worker else None,
            "worker.warm": allocation.warm if allocation is not None else None,
        },
        error=f"{type(error).__name__}: {error}" if error is not None else "",
    )


def disposal_end(
    *, call: str, request: Any, started_ns: int, supervisor: Any, disposal: Any = None, error: Exception | None = None
) -> None:
    """Trace one ReleaseWorker or CancelAllocation call."""
    supervisor_call_end(
        call=call,
        traceparent=request.traceparent,
        started_ns=started_ns,
        events=list(disposal.events) if disposal is not None else [],
        attributes={
            "worker.id": request.worker_id,
            "supervisor.id": supervisor.supervisor_id,
            "runtime": supervisor.runtime,
            "release.reason": request.reason,
            "worker.exit_code": disposal.exit_code if disposal is not None else None,
        },
        error=f"{type(error).__name__}: {error}" if error is not None else "",
    )

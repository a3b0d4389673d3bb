"""Writes of the invocation history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from platform_core.invocations.models import Invocation, InvocationEvent, Participant, Status
from platform_core.invocations.timings import phase_timings
from platform_core.invocations.trace import TraceEvent
from platform_core.invocations.writer import record_writer
from platform_core.registry.models import PluginSpec


@dataclass(frozen=True)
class Caller:
    """Who asks: ids carried to the worker in the PPP context."""

    tenant_id: str = "default"
    user_id: str = "anonymous"
    session_id: str = ""
    request_id: str = ""
    # Sees every tenant's invocations (staff keys, staff users).
    is_staff: bool = False


def _plugin_still_there(plugin: Any) -> Any:
    """``plugin``, or None if it was deleted since the gateway cached it: history is never lost
    to a registry edit (it keeps the plugin's name either way)."""
    if plugin is None or PluginSpec.objects.filter(pk=plugin.pk).exists():
        return plugin
    return None


async def invocation_start(
    *, invocation_id: str, plugin: Any, caller: Caller, arguments: Any, gateway_instance: str = ""
) -> Invocation:
    """Record an accepted invocation as running, before any worker is asked for."""
    return await record_writer.write(
        lambda: Invocation.objects.create(
            id=invocation_id,
            gateway_instance=gateway_instance,
            plugin=_plugin_still_there(plugin),
            plugin_name=plugin.name,
            runtime=plugin.runtime_id,
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
            session_id=caller.session_id,
            request_id=caller.request_id,
            arguments=arguments,
            status=Status.RUNNING,
        )
    )


@dataclass
class Finish:
    """The final state of an invocation."""

    status: Status
    http_status: int
    plugin: Any = None
    plugin_name: str = ""
    arguments: Any = None
    result: Any = None
    error_code: str = ""
    error_message: str = ""
    worker_id: str = ""
    worker_warm: bool | None = None
    backend: str = ""
    worker_log: str = ""
    worker_log_truncated: bool = False


def _finish(invocation_id: str, caller: Caller, finish: Finish, events: Sequence[TraceEvent]) -> dict[str, Any]:
    timings = phase_timings(events)
    fields = {
        "status": finish.status,
        "http_status": finish.http_status,
        "result": finish.result,
        "error_code": finish.error_code,
        "error_message": finish.error_message[:10_000],
        "worker_id": finish.worker_id,
        "worker_warm": finish.worker_warm,
        "backend": finish.backend,
        "worker_log": finish.worker_log,
        "worker_log_truncated": finish.worker_log_truncated,
        "finished_at": timezone.now(),
        **{f"{phase}_ms": value for phase, value in timings.items()},
    }
    with transaction.atomic():  # inside the writer's batch: a savepoint
        updated = Invocation.objects.filter(id=invocation_id).update(**fields)
        if not updated:  # rejected before it started (unknown plugin, bad input): first and last write
            Invocation.objects.create(
                id=invocation_id,
                plugin=_plugin_still_there(finish.plugin),
                plugin_name=finish.plugin_name[:100],
                runtime=getattr(finish.plugin, "runtime_id", ""),
                arguments=finish.arguments,
                tenant_id=caller.tenant_id,
                user_id=caller.user_id,
                session_id=caller.session_id,
                request_id=caller.request_id,
                **fields,
            )
        InvocationEvent.objects.bulk_create(
            InvocationEvent(
                invocation_id=invocation_id,
                seq=e.seq,
                source=e.source,
                target=e.target,
                kind=e.kind,
                phase=e.phase,
                detail=e.detail,
                offset_ms=e.offset_ms,
            )
            for e in events
        )
    return timings


async def invocation_finish(
    *, invocation_id: str, caller: Caller, finish: Finish, events: Sequence[TraceEvent]
) -> dict[str, float | None]:
    """Store the final state and the whole trace in one transaction; the phase timings."""
    return await record_writer.write(lambda: _finish(invocation_id, caller, finish, events))


def invocations_interrupt(*, gateway_instance: str, started_before: datetime) -> list[str]:
    """Mark what an earlier life of ``gateway_instance`` left running as interrupted; their ids.

    Only rows of that instance created before ``started_before`` (the start of the life that
    recovers them): another gateway process's invocations may well still be running.
    """
    now = timezone.now()
    with transaction.atomic():
        left = list(
            Invocation.objects.select_for_update()
            .filter(status=Status.RUNNING, gateway_instance=gateway_instance, created_at__lt=started_before)
            .values_list("id", "created_at")
        )
        message = f"the gateway ({gateway_instance}) stopped before this invocation finished"
        Invocation.objects.filter(id__in=[i for i, _ in left]).update(
            status=Status.INTERRUPTED, error_code="interrupted", error_message=message, finished_at=now
        )
        InvocationEvent.objects.bulk_create(
            InvocationEvent(
                invocation_id=invocation_id,
                seq=1,
                source=Participant.GATEWAY,
                target=Participant.CLIENT,
                kind="interrupted",
                phase=7,
                detail=f"{message}; marked when it started again",
                offset_ms=(now - created_at).total_seconds() * 1000,
            )
            for invocation_id, created_at in left
        )
    return [str(i) for i, _ in left]

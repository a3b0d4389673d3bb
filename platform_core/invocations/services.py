"""Writes of the invocation history.

An invocation is written at most twice: once when it is accepted (``invocation_start``, while
its worker is allocated, so that a gateway that dies mid-invocation leaves a ``running`` row
its next life can mark ``interrupted``), and once when it ends (``invocation_finish``: final
state, timings and the whole trace as one document, one statement). Both go through the
group-commit writer; every caller waits for its own write: nothing is acknowledged that is
not stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from platform_core.invocations.documents import storable
from platform_core.invocations.models import Invocation, Status
from platform_core.invocations.timings import phase_timings
from platform_core.invocations.trace import TraceEvent
from platform_core.invocations.vocabulary import EventKind
from platform_core.invocations.writer import record_writer
from platform_core.registry.models import PluginSpec
from platform_core.tenancy.callers import Caller


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
    arguments = storable(arguments)
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


def _finish(
    invocation_id: str, caller: Caller, finish: Finish, trace: list[dict[str, Any]], timings: dict[str, float | None]
) -> None:
    fields = {
        "status": finish.status,
        "http_status": finish.http_status,
        "result": storable(finish.result),
        "error_code": finish.error_code,
        "error_message": finish.error_message[:10_000],
        "worker_id": finish.worker_id,
        "worker_warm": finish.worker_warm,
        "backend": finish.backend,
        "worker_log": finish.worker_log,
        "worker_log_truncated": finish.worker_log_truncated,
        "finished_at": timezone.now(),
        "trace": trace,
        **{f"{phase}_ms": value for phase, value in timings.items()},
    }
    updated = Invocation.objects.filter(id=invocation_id).update(**fields)
    if not updated:  # refused or rejected before it started (quota, unknown plugin, bad input): one write
        Invocation.objects.create(
            id=invocation_id,
            plugin=_plugin_still_there(finish.plugin),
            plugin_name=finish.plugin_name[:100],
            runtime=getattr(finish.plugin, "runtime_id", ""),
            arguments=storable(finish.arguments),
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
            session_id=caller.session_id,
            request_id=caller.request_id,
            **fields,
        )


async def invocation_finish(
    *, invocation_id: str, caller: Caller, finish: Finish, events: Sequence[TraceEvent]
) -> dict[str, float | None]:
    """Store the final state and the whole trace in one statement; the phase timings."""
    timings = phase_timings(events)
    trace = [event.stored() for event in events]
    await record_writer.write(lambda: _finish(invocation_id, caller, finish, trace, timings))
    return timings


def invocations_interrupt(*, gateway_instance: str, started_before: datetime) -> list[str]:
    """Mark what an earlier life of ``gateway_instance`` left running as interrupted; their ids.

    Only rows of that instance created before ``started_before`` (the start of the life that
    recovers them): another gateway process's invocations may well still be running.
    """
    now = timezone.now()
    message = f"the gateway ({gateway_instance}) stopped before this invocation finished"
    with transaction.atomic():
        left = list(
            Invocation.objects.select_for_update()
            .filter(status=Status.RUNNING, gateway_instance=gateway_instance, created_at__lt=started_before)
            .only("id", "created_at", "trace")
        )
        kind = EventKind.INTERRUPTED
        for invocation in left:
            offset = (now - invocation.created_at).total_seconds() * 1000
            invocation.trace = [
                *invocation.trace,
                {
                    "seq": len(invocation.trace) + 1,
                    "phase": int(kind.phase),
                    "offset_ms": round(offset, 3),
                    "source": kind.source.value,
                    "target": kind.target.value,
                    "kind": kind.value,
                    "detail": f"{message}; marked when it started again",
                },
            ]
            invocation.status, invocation.error_code, invocation.error_message = (
                Status.INTERRUPTED,
                "interrupted",
                message,
            )
            invocation.finished_at = now
        Invocation.objects.bulk_update(left, ["trace", "status", "error_code", "error_message", "finished_at"])
    return [str(invocation.id) for invocation in left]

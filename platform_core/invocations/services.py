"""Writes of the invocation history.

An invocation is written at most twice: once when it is accepted (``invocation_start``, while
its worker is allocated, so that a gateway that dies mid-invocation leaves a ``running`` row
its next life can mark ``interrupted``), and once when it ends (``invocation_finish``: final
state, timings and the whole trace as one document, one statement). Both go through the
group-commit writer; every caller waits for its own write: nothing is acknowledged that is
not stored.
"""

from __future__ import annotations

import uuid
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
from platform_core.invocations.writer import Row, record_writer
from platform_core.registry.models import PluginSpec
from platform_core.tenancy.callers import Caller


def _identity(
    *, invocation_id: str, plugin: PluginSpec | None, plugin_name: str, caller: Caller, arguments: Any
) -> dict[str, Any]:
    """The columns an invocation has from its start: who asked for what."""
    return {
        "id": uuid.UUID(invocation_id),
        # Not checked against the registry: a plugin deleted while a gateway still cached it leaves
        # a dangling id (no database constraint), and the history keeps its name either way.
        "plugin": getattr(plugin, "pk", None),
        "plugin_name": plugin_name[:100],
        "runtime": getattr(plugin, "runtime_id", "") or "",
        "tenant_id": caller.tenant_id,
        "user_id": caller.user_id,
        "session_id": caller.session_id,
        "request_id": caller.request_id,
        "arguments": storable(arguments),
    }


async def invocation_start(
    *, invocation_id: str, plugin: PluginSpec, caller: Caller, arguments: Any, gateway_instance: str = "", at: datetime
) -> None:
    """Record an accepted invocation as running (``at``: when its request arrived), before any
    worker is asked for: a gateway that dies mid-invocation leaves it for its next life to mark
    ``interrupted``."""
    values = {
        **_identity(
            invocation_id=invocation_id, plugin=plugin, plugin_name=plugin.name, caller=caller, arguments=arguments
        ),
        **_UNFINISHED,
        "status": Status.RUNNING,
        "created_at": at,
        "gateway_instance": gateway_instance,
    }
    await record_writer.write_row(Row("start", values))


_UNFINISHED: dict[str, Any] = {
    "http_status": None,
    "result": None,
    "error_code": "",
    "error_message": "",
    "worker_id": "",
    "worker_warm": None,
    "backend": "",
    "worker_log": "",
    "worker_log_truncated": False,
    "finished_at": None,
    "trace": [],
    "allocation_ms": None,
    "init_ms": None,
    "execution_ms": None,
    "release_ms": None,
    "total_ms": None,
}


@dataclass
class Finish:
    """The final state of an invocation."""

    status: Status
    http_status: int
    plugin: PluginSpec | None = None
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


async def invocation_finish(
    *,
    invocation_id: str,
    caller: Caller,
    finish: Finish,
    events: Sequence[TraceEvent],
    at: datetime,
    gateway_instance: str = "",
) -> dict[str, float | None]:
    """Store the final state, the timings and the whole trace in one statement (an upsert: an
    invocation refused or rejected before it started has no row yet); the phase timings."""
    timings = phase_timings(events)
    values = {
        **_identity(
            invocation_id=invocation_id,
            plugin=finish.plugin,
            plugin_name=finish.plugin_name,
            caller=caller,
            arguments=finish.arguments,
        ),
        "created_at": at,
        "gateway_instance": gateway_instance,
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
        "trace": [event.stored() for event in events],
        **{f"{phase}_ms": value for phase, value in timings.items()},
    }
    await record_writer.write_row(Row("finish", values))
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

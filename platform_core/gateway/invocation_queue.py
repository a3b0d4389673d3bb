"""Async invocations: a durable queue in the platform's database, consumed by every gateway process.

``invocation_enqueue`` records the invocation ``queued`` and puts its request (body, caller) in
``QueuedInvocation``, in one transaction, and answers at once. Each gateway process runs
``consume_forever``: it claims the oldest queued request (PostgreSQL: ``SELECT … FOR UPDATE
SKIP LOCKED``, so that gateways never wait on each other's claims; SQLite, which has one writer
at a time: a conditional ``DELETE`` whose row count says who won), marks the invocation
``running`` under its own instance id and deletes the request in the same transaction, then
runs it through ``service.invocation_submit`` like any other invocation. A request nobody has
claimed survives any number of gateway restarts; one a gateway claimed and was running when it
died is marked ``interrupted`` by that gateway's next life (``recovery``), as a synchronous one
is: an invocation that started never runs twice. A request whose tenant is over its rate or
concurrency quota when it is claimed goes back to the queue, claimable again a moment later
(its ``Retry-After``, 1 to 5 s): queued invocations wait for their tenant's quota instead of
failing ``throttled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from platform_core.gateway import instance, service
from platform_core.invocations.documents import NotJson, loads_strict, storable
from platform_core.invocations.models import Invocation, QueuedInvocation, Status
from platform_core.invocations.vocabulary import EventKind as K
from platform_core.registry.models import PluginSpec
from platform_core.tenancy.admission import Refused, admission
from platform_core.tenancy.callers import Caller, TenantLimits

log = logging.getLogger(__name__)

_wake: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}


def _caller_json(caller: Caller) -> dict[str, Any]:
    return dataclasses.asdict(caller)


def _caller_from(data: dict[str, Any]) -> Caller:
    fields = {f.name for f in dataclasses.fields(Caller)}
    values = {k: v for k, v in data.items() if k in fields}
    values["limits"] = TenantLimits(**data.get("limits", {}))
    return Caller(**values)


def _arguments(body: bytes) -> Any:
    try:
        return storable(loads_strict(body))
    except (NotJson, RecursionError, ValueError):
        return None


def _enqueue(*, invocation_id: str, plugin: PluginSpec, body: bytes, caller: Caller, origin: str) -> None:
    queued = {
        "seq": 1,
        "phase": int(K.QUEUED.phase),
        "offset_ms": 0.0,
        "source": K.QUEUED.source.value,
        "target": K.QUEUED.target.value,
        "kind": K.QUEUED.value,
        "detail": f"{origin}: queued until a gateway runs it",
    }
    with transaction.atomic():
        Invocation.objects.create(
            id=uuid.UUID(invocation_id),
            plugin_id=plugin.pk,
            plugin_name=plugin.name,
            runtime=plugin.runtime_id,
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
            session_id=caller.session_id,
            request_id=caller.request_id,
            arguments=_arguments(body),
            status=Status.QUEUED,
            trace=[queued],
        )
        QueuedInvocation.objects.create(
            invocation_id=uuid.UUID(invocation_id),
            name=plugin.name,
            body=body,
            origin=origin,
            caller=_caller_json(caller),
        )


async def invocation_enqueue(
    *, invocation_id: str, plugin: PluginSpec, body: bytes, caller: Caller, origin: str
) -> None:
    """Record ``invocation_id`` as queued with its request; a gateway process will run it."""
    await sync_to_async(_enqueue, thread_sensitive=False)(
        invocation_id=invocation_id, plugin=plugin, body=body, caller=caller, origin=origin
    )
    if (event := _wake.get(asyncio.get_running_loop())) is not None:
        event.set()


@dataclasses.dataclass(frozen=True)
class Claimed:
    invocation_id: str
    name: str
    body: bytes
    origin: str
    caller: Caller
    queued_at: Any
    caller_json: dict[str, Any]


def _running(row: QueuedInvocation) -> Claimed:
    Invocation.objects.filter(pk=row.invocation_id, status=Status.QUEUED).update(
        status=Status.RUNNING, gateway_instance=instance.INSTANCE_ID
    )
    return Claimed(
        str(row.invocation_id),
        row.name,
        bytes(row.body),
        row.origin,
        _caller_from(row.caller),
        row.created_at,
        row.caller,
    )


def invocation_claim() -> Claimed | None:
    """Take the oldest queued request off the queue (the invocation is now ``running`` here)."""
    if connection.vendor == "postgresql":
        with transaction.atomic():
            ready = QueuedInvocation.objects.filter(available_at__lte=timezone.now())
            row = ready.select_for_update(skip_locked=True).order_by("available_at", "created_at").first()
            if row is None:
                return None
            QueuedInvocation.objects.filter(pk=row.pk).delete()
            return _running(row)
    # SQLite: one writer at a time; the DELETE that removes the row is the claim.
    ready = QueuedInvocation.objects.filter(available_at__lte=timezone.now())
    for row in ready.order_by("available_at", "created_at")[:8]:
        with transaction.atomic():
            deleted, _ = QueuedInvocation.objects.filter(pk=row.pk).delete()
            if deleted:
                return _running(row)
    return None


def queued_cancel(*, invocation_id: str) -> bool:
    """Take a queued invocation off the queue and record it ``cancelled``; False when a gateway
    has claimed it already (it runs: cancel it there)."""
    with transaction.atomic():
        deleted, _ = QueuedInvocation.objects.filter(pk=uuid.UUID(invocation_id)).delete()
        if not deleted:
            return False
        invocation = Invocation.objects.get(pk=invocation_id)
        now = timezone.now()
        offset = round((now - invocation.created_at).total_seconds() * 1000, 3)
        kind = K.INVOCATION_CANCELLED
        invocation.trace = [
            *invocation.trace,
            {
                "seq": len(invocation.trace) + 1,
                "phase": int(kind.phase),
                "offset_ms": offset,
                "source": kind.source.value,
                "target": kind.target.value,
                "kind": kind.value,
                "detail": "cancelled while queued: it never ran",
            },
        ]
        invocation.status, invocation.http_status = Status.CANCELLED, 409
        invocation.error_code, invocation.error_message = "cancelled", "the invocation was cancelled before it ran"
        invocation.finished_at, invocation.total_ms = now, offset
        invocation.save(
            update_fields=["trace", "status", "http_status", "error_code", "error_message", "finished_at", "total_ms"]
        )
    return True


def _requeue(claimed: Claimed, *, delay_s: float) -> None:
    """Put a claimed request back (its tenant is over its quota): claimable again in ``delay_s``."""
    with transaction.atomic():
        QueuedInvocation.objects.create(
            invocation_id=uuid.UUID(claimed.invocation_id),
            name=claimed.name,
            body=claimed.body,
            origin=claimed.origin,
            caller=claimed.caller_json,
            available_at=timezone.now() + timedelta(seconds=delay_s),
        )
        QueuedInvocation.objects.filter(pk=uuid.UUID(claimed.invocation_id)).update(created_at=claimed.queued_at)
        Invocation.objects.filter(pk=claimed.invocation_id, status=Status.RUNNING).update(
            status=Status.QUEUED, gateway_instance=""
        )


async def _run(claimed: Claimed) -> None:
    """Admit the caller (a tenant over its quota waits in the queue), then run it as any invocation."""
    try:
        ticket = await admission.enter(claimed.caller)
    except Refused as refused:
        await sync_to_async(_requeue, thread_sensitive=False)(claimed, delay_s=min(max(refused.retry_after, 1), 5))
        return
    waited = (timezone.now() - claimed.queued_at).total_seconds() * 1000
    await service.invocation_submit(
        name=claimed.name,
        body=claimed.body,
        caller=claimed.caller,
        origin=f"{claimed.origin} (async, queued {waited:.0f} ms)",
        invocation_id=claimed.invocation_id,
        ticket=ticket,
    )


async def consume_forever() -> None:
    """Run queued invocations, at most ASYNC_CONCURRENCY at once in this process."""
    loop = asyncio.get_running_loop()
    wake = _wake[loop] = asyncio.Event()
    slots = asyncio.Semaphore(settings.PLATFORM_ASYNC_CONCURRENCY)
    tasks: set[asyncio.Task[None]] = set()
    while True:
        await slots.acquire()
        try:
            claimed = await sync_to_async(invocation_claim, thread_sensitive=False)()
        except Exception:
            log.warning("could not look at the invocation queue", exc_info=True)
            claimed = None
        if claimed is None:
            slots.release()
            wake.clear()
            started = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), settings.PLATFORM_ASYNC_POLL_S)
            if time.monotonic() - started < 0.01:
                await asyncio.sleep(0.01)
            continue
        task = asyncio.ensure_future(_run(claimed))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(lambda _: slots.release())

"""Cancelling a running invocation, whichever gateway process runs it.

Each gateway process tracks the invocations it runs (their tasks). ``POST
/api/v1/invocations/{id}/cancel`` stores a ``CancelRequest`` (any process may receive it) and
cancels at once when the invocation runs in this very process; every process looks for
requests about its own running invocations every ``CANCEL_POLL_S`` (only while it runs any).

Cancelling the task cancels the PPP ``Invoke`` stream (the worker SDKs see the cancellation and
stop the handler); the worker is then released never to be reused, or force-stopped with
``CancelAllocation`` when that takes longer than ``CANCEL_GRACE_S`` (``worker_release``). The
invocation ends ``cancelled``, recorded with its trace.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.25

_running: dict[str, asyncio.Task[object]] = {}
_requested: set[str] = set()


def track(invocation_id: str) -> None:
    """The current task runs ``invocation_id`` (until ``untrack``)."""
    task = asyncio.current_task()
    if task is not None:
        _running[invocation_id] = task


def untrack(invocation_id: str) -> None:
    _running.pop(invocation_id, None)
    _requested.discard(invocation_id)


def requested(invocation_id: str) -> bool:
    """Whether the invocation's task was cancelled because someone asked (not a shutdown)."""
    return invocation_id in _requested


def runs_here(invocation_id: str) -> bool:
    return invocation_id in _running


def _ending(invocation_id: str) -> bool:
    """Whether the invocation is past its worker's last word (its result is in: too late to cancel)."""
    from platform_core.invocations.snapshots import running_trace
    from platform_core.invocations.vocabulary import EventKind as K

    trace = running_trace(invocation_id)
    ended = {K.COMPLETED, K.FAILED, K.WORKER_LOST, K.TIMEOUT, K.RELEASE_REQUEST, K.CANCEL_REQUEST, K.RESPONSE}
    return trace is not None and any(event.kind in ended for event in trace.events)


def cancel_local(invocation_id: str) -> bool:
    """Cancel ``invocation_id`` if this process runs it; whether it does. One whose worker has
    already answered finishes as it is (its release is not cut short)."""
    task = _running.get(invocation_id)
    if task is None or task.done():
        return False
    if _ending(invocation_id):
        return True
    if invocation_id not in _requested:
        _requested.add(invocation_id)
        task.cancel()
    return True


def _requested_among(ids: list[str]) -> list[str]:
    from platform_core.invocations.models import CancelRequest

    wanted = [uuid.UUID(i) for i in ids]
    found = CancelRequest.objects.filter(invocation_id__in=wanted).values_list("invocation_id", flat=True)
    return [str(i) for i in found]


async def watch_forever() -> None:
    """Act on cancel requests (stored by any gateway process) for the invocations running here."""
    while True:
        await asyncio.sleep(CANCEL_POLL_S)
        ids = [i for i in _running if i not in _requested]
        if not ids:
            continue
        try:
            for invocation_id in await sync_to_async(_requested_among)(ids):
                cancel_local(invocation_id)
        except Exception:  # the database is away for a moment: look again at the next round
            log.warning("could not look for cancel requests", exc_info=True)


# How long ``POST …/cancel`` waits for a running invocation to end before answering 202.
CANCEL_WAIT_S = 15.0


def _request(invocation_id: str) -> None:
    from platform_core.invocations.models import CancelRequest

    CancelRequest.objects.get_or_create(invocation_id=uuid.UUID(invocation_id))


def _forget(invocation_id: str) -> None:
    from platform_core.invocations.models import CancelRequest

    CancelRequest.objects.filter(invocation_id=uuid.UUID(invocation_id)).delete()


async def invocation_cancel(*, invocation_id: str, status: str) -> tuple[bool, object | None]:
    """Cancel ``invocation_id`` (now in ``status``): a queued one is taken off the queue and never
    runs; a running one is cancelled on its worker, by whichever gateway process runs it.

    (True, the invocation once cancelled) or (True, None) while it is still being cancelled after
    ``CANCEL_WAIT_S``; (False, the invocation) when it had finished (or finishes meanwhile) otherwise.
    """
    from platform_core.gateway import idempotency, invocation_queue
    from platform_core.invocations.models import FINAL_STATUSES, Invocation, Status

    if status in FINAL_STATUSES:
        return False, await sync_to_async(Invocation.objects.get)(pk=invocation_id)
    if status == Status.QUEUED and await sync_to_async(invocation_queue.queued_cancel)(invocation_id=invocation_id):
        return True, await sync_to_async(Invocation.objects.get)(pk=invocation_id)
    # Running (or claimed by a gateway a moment ago): ask whoever runs it.
    await sync_to_async(_request)(invocation_id)
    cancel_local(invocation_id)
    finished = await idempotency.invocation_wait(invocation_id=invocation_id, timeout_s=CANCEL_WAIT_S, every_s=0.05)
    if finished is None:
        return True, None
    await sync_to_async(_forget)(invocation_id)
    return finished.status == Status.CANCELLED, finished


async def invocation_cancel_soon(*, invocation_id: str) -> None:
    """Ask for ``invocation_id`` to be cancelled without waiting (a stream's client went away)."""
    if not cancel_local(invocation_id):
        await sync_to_async(_request)(invocation_id)


async def worker_release(give_back: Callable[..., Awaitable[Any]], *, grace_s: float) -> Any:
    """Give back the worker of an invocation cancelled on request, whose Invoke stream is
    cancelled already (PPP: the SDK stops the handler): released never to be reused (an
    ephemeral worker stops gracefully: SIGTERM, SIGKILL after WORKER_STOP_GRACE_S) within
    ``grace_s``, else force-stopped with CancelAllocation. ``give_back(reason, **how)`` is the
    invocation's release (``leases.Keeper.release``); its ``ReleaseReport``."""
    try:
        async with asyncio.timeout(grace_s):
            return await give_back("cancelled", retire=True)
    except TimeoutError:
        log.warning("a cancelled invocation's worker was not released within %.1f s: force-stopping it", grace_s)
        return await give_back(f"cancelled; not stopped within {grace_s:g} s", force=True)

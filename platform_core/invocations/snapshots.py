"""What a running invocation's trace holds so far, for a viewer who arrives while it runs.

The stored trace only exists once an invocation has finished, and live events are sent only
while someone watches: a page opened in the middle of a run would miss every arrow before it.
So each gateway process keeps its running traces (weakly: a finished one goes with its
invocation), and answers a viewer's request for one with the events so far, sent to the
viewer's channel like any live batch (with ``"snapshot": true``).

Requests go to a group that every gateway process's loop joins once (``SNAPSHOT_GROUP``), so
that a viewer on one gateway gets the trace of an invocation that another one runs (a Redis
channel layer); only the process that runs it answers. A viewer joins the invocation's live
group *before* asking, so that nothing falls between the snapshot and the live events; it
drops what it already has by ``seq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from platform_core.invocations.trace import Trace

log = logging.getLogger(__name__)

SNAPSHOT_GROUP = "trace-snapshots"
# Channel-layer group memberships expire (a day by default): the answering channel re-joins.
REJOIN_S = 600.0

_running: weakref.WeakValueDictionary[str, Trace] = weakref.WeakValueDictionary()
_answerers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()


def trace_running(trace: Trace) -> None:
    """Called for every new trace: remembered (weakly) and answerable from this loop."""
    _running[trace.invocation_id] = trace
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a trace made outside an event loop (tests): nothing can ask this loop
        return
    task = _answerers.get(loop)
    if task is None or task.done():
        _answerers[loop] = loop.create_task(_answer_forever())


def snapshot_batch(trace: Trace) -> dict[str, Any]:
    """The trace so far as one live batch."""
    return {
        "invocation_id": trace.invocation_id,
        "context": trace.context,
        "items": [{"event": event.as_message()} for event in list(trace.events)],
        "snapshot": True,
    }


async def _answer_forever() -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    channel = await layer.new_channel()
    while True:
        try:
            await layer.group_add(SNAPSHOT_GROUP, channel)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REJOIN_S):
                    while True:
                        await _answer(layer, await layer.receive(channel))
        except asyncio.CancelledError:
            raise
        except Exception:  # the live view is best effort: keep answering
            log.warning("trace snapshot answerer failed; restarting", exc_info=True)
            await asyncio.sleep(1.0)


async def _answer(layer: Any, message: dict[str, Any]) -> None:
    trace = _running.get(str(message.get("invocation_id", "")))
    if trace is None or not message.get("reply_to"):
        return
    await layer.send(message["reply_to"], {"type": "invocation.batch", "batches": [snapshot_batch(trace)]})


async def snapshot_request(layer: Any, *, invocation_id: str, reply_to: str) -> None:
    """Ask every gateway process for the trace so far of ``invocation_id``; the one that runs it
    sends it to channel ``reply_to`` (nobody answers for an invocation that has finished)."""
    await layer.group_send(
        SNAPSHOT_GROUP, {"type": "trace.snapshot", "invocation_id": invocation_id, "reply_to": reply_to}
    )


def running_trace(invocation_id: str) -> Trace | None:
    """The trace of ``invocation_id`` if this process runs it now."""
    return _running.get(invocation_id)

"""Server-Sent Events over ASGI: an invocation followed as it runs (``sse`` has the messages).

``invocation_stream`` runs an invocation (through the one service) and streams its steps, then
its outcome. ``events_stream`` follows an invocation that was started elsewhere (async, another
request, another gateway process): what has happened so far, then the rest live when this
process runs it, else from the database as it is recorded, then its outcome. A client that goes
away does not cancel the invocation unless it asked to (``?cancel_on_disconnect=1``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from asgiref.sync import sync_to_async

from platform_core.gateway import cancellation, service, sse
from platform_core.invocations.models import FINAL_STATUSES, Invocation
from platform_core.invocations.snapshots import running_trace
from platform_core.invocations.vocabulary import EventKind as K
from platform_core.tenancy.callers import Caller

# Keep-alive comment while nothing happens (proxies close idle connections), and how often a
# stream that cannot follow the invocation live looks at the database.
KEEPALIVE_S = 15.0
POLL_S = 0.2


async def _start(send: Any, extra: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [*sse.HEADERS, *extra]})


async def _write(send: Any, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _end(send: Any, data: bytes = b"") -> None:
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _item_frame(invocation_id: str, item: dict[str, Any]) -> bytes | None:
    event = item.get("event")
    if event is None:
        return None
    return sse.step(invocation_id, event.stored(), event.data)


async def invocation_stream(
    *,
    send: Any,
    receive: Any,
    name: str,
    style: service.Style,
    caller: Caller,
    body: bytes,
    origin: str,
    invocation_id: str,
    cancel_on_disconnect: bool,
    extra_headers: list[tuple[bytes, bytes]],
) -> None:
    """Run the invocation and stream it: ``accepted``, its steps, then ``result`` or ``error``."""
    items: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    submit = asyncio.ensure_future(
        service.invocation_submit(
            name=name, body=body, caller=caller, origin=origin, invocation_id=invocation_id, listener=items.put_nowait
        )
    )
    await _start(send, extra_headers)
    await _write(send, sse.frame("accepted", {"invocation_id": invocation_id}))
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        while True:
            getter = asyncio.ensure_future(items.get())
            done, _ = await asyncio.wait({getter, submit, gone}, timeout=KEEPALIVE_S, return_when="FIRST_COMPLETED")
            if getter in done:
                if (data := _item_frame(invocation_id, getter.result())) is not None:
                    await _write(send, data)
                continue
            getter.cancel()
            if gone in done:
                if cancel_on_disconnect:
                    await cancellation.invocation_cancel_soon(invocation_id=invocation_id)
                return
            if submit in done:
                while not items.empty():
                    if (data := _item_frame(invocation_id, items.get_nowait())) is not None:
                        await _write(send, data)
                status, payload, _ = service.answer(submit.result(), style=style, name=name)
                await _end(send, sse.outcome_frame(status, payload))
                return
            await _write(send, sse.comment("keep-alive"))
    finally:
        gone.cancel()


def _load(invocation_id: str) -> Invocation | None:
    return Invocation.objects.filter(pk=invocation_id).first()


async def events_stream(
    *, send: Any, receive: Any, invocation: Invocation, style: service.Style = "invoke", started: bool = False
) -> None:
    """Follow a recorded invocation from its start: its steps so far, the rest as they happen, then
    its outcome. ``started``: the response has begun already (a retry attached to a stream)."""
    invocation_id = str(invocation.id)
    if not started:
        await _start(send, [])
    gone = asyncio.ensure_future(_disconnected(receive))
    sent = 0  # the last seq sent

    async def replay(events: list[dict[str, Any]]) -> None:
        nonlocal sent
        for event in events:
            if event["seq"] > sent and (data := sse.step(invocation_id, event)) is not None:
                await _write(send, data)
            sent = max(sent, event["seq"])

    try:
        current: Invocation | None = invocation
        idle = 0.0
        while current is not None:
            if current.status in FINAL_STATUSES:
                await replay(current.trace)
                status, payload, _ = service.recorded_answer(current, style=style)
                await _end(send, sse.outcome_frame(status, payload))
                return
            if (trace := running_trace(invocation_id)) is not None:
                if await _follow(send, trace, gone, sent):
                    return  # the client went away
                sent = 0  # the trace's own seq numbering from here; the record says the rest
                current = await sync_to_async(_load)(invocation_id)
                if current is not None and current.status in FINAL_STATUSES:
                    status, payload, _ = service.recorded_answer(current, style=style)
                    await _end(send, sse.outcome_frame(status, payload))
                    return
                await asyncio.sleep(POLL_S)  # its final record is being written
                continue
            if sent == 0:  # queued (or run by another gateway process): what the record says so far
                await replay(current.trace)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(gone), POLL_S)
            if gone.done():
                return
            idle += POLL_S
            if idle >= KEEPALIVE_S:
                idle = 0.0
                await _write(send, sse.comment("keep-alive"))
            current = await sync_to_async(_load)(invocation_id)
        await _end(send)
    finally:
        gone.cancel()


async def _follow(send: Any, trace: Any, gone: asyncio.Future[None], sent: int) -> bool:
    """Stream a trace this process runs until its final state; True when the client went away."""
    items: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    trace.listeners.append(items.put_nowait)
    try:
        # What it holds so far (a step seen again through the listener is skipped by seq).
        ended = False
        for event in list(trace.events):
            if event.seq > sent and (data := sse.step(trace.invocation_id, event.stored(), event.data)) is not None:
                await _write(send, data)
            sent = max(sent, event.seq)
            ended |= event.kind == K.RESPONSE
        if ended:  # it is being recorded (its final state may have been sent before we listened)
            return False
        while True:
            getter = asyncio.ensure_future(items.get())
            done, _ = await asyncio.wait({getter, gone}, timeout=KEEPALIVE_S, return_when="FIRST_COMPLETED")
            if getter not in done:
                getter.cancel()
                if gone in done:
                    return True
                await _write(send, sse.comment("keep-alive"))
                continue
            item = getter.result()
            if (state := item.get("state")) is not None and state.get("status") in FINAL_STATUSES:
                return False
            event = item.get("event")
            if event is not None and event.seq > sent:
                sent = event.seq
                if (data := sse.step(trace.invocation_id, event.stored(), event.data)) is not None:
                    await _write(send, data)
    finally:
        with contextlib.suppress(ValueError):
            trace.listeners.remove(items.put_nowait)

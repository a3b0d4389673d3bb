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
import time
from typing import Any

from asgiref.sync import sync_to_async

from platform_core.gateway import cancellation, service, sse
from platform_core.invocations.live import ANNOUNCE_INTERVAL_S, audience, invocation_group
from platform_core.invocations.models import FINAL_STATUSES, Invocation
from platform_core.invocations.snapshots import running_trace, snapshot_request
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


class _Steps:
    """What an events stream has sent: each step once, in ``seq`` order."""

    def __init__(self, send: Any, invocation_id: str) -> None:
        self.send, self.invocation_id, self.sent = send, invocation_id, 0
        self.written = time.monotonic()

    async def write(self, event: dict[str, Any], data: dict[str, Any] | None = None) -> None:
        if event["seq"] <= self.sent:
            return
        self.sent = event["seq"]
        if (frame := sse.step(self.invocation_id, event, data)) is not None:
            await _write(self.send, frame)
            self.written = time.monotonic()

    async def keep_alive(self) -> None:
        """A comment after ``KEEPALIVE_S`` of silence (proxies close idle connections)."""
        if time.monotonic() - self.written >= KEEPALIVE_S:
            await _write(self.send, sse.comment("keep-alive"))
            self.written = time.monotonic()

    async def replay(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            await self.write(event)


async def events_stream(
    *, send: Any, receive: Any, invocation: Invocation, style: service.Style = "invoke", started: bool = False
) -> None:
    """Follow a recorded invocation from its start: its steps so far, the rest as they happen, then
    its outcome. ``started``: the response has begun already (a retry attached to a stream).

    Live from the trace itself when this process runs it; from the channel layer when another
    gateway process does (``_Remote``, as the dashboard's live view); and whatever happens, the
    record has the last word: once it is final its steps not sent yet are, then its outcome.
    """
    invocation_id = str(invocation.id)
    if not started:
        await _start(send, [])
    gone = asyncio.ensure_future(_disconnected(receive))
    steps = _Steps(send, invocation_id)
    remote = _Remote(invocation_id)
    try:
        current: Invocation | None = invocation
        while current is not None:
            if current.status in FINAL_STATUSES:
                await steps.replay(current.trace)
                status, payload, _ = service.recorded_answer(current, style=style)
                await _end(send, sse.outcome_frame(status, payload))
                return
            if (trace := running_trace(invocation_id)) is not None:
                if await _follow(steps, trace, gone):
                    return  # the client went away
                current = await sync_to_async(_load)(invocation_id)
                if current is None or current.status not in FINAL_STATUSES:
                    await asyncio.sleep(POLL_S)  # its final record is being written
                continue
            await steps.replay(current.trace)  # queued, or run by another process: the record so far
            if await remote.wait(steps, gone, POLL_S):
                return  # the client went away
            await steps.keep_alive()
            current = await sync_to_async(_load)(invocation_id)
        await _end(send)
    finally:
        gone.cancel()
        await remote.close()


class _Remote:
    """The live events of an invocation that another gateway process runs, through the channel
    layer: its group joined (and the audience told, so that the process running it sends them),
    then a snapshot of its steps so far asked for; a gap in what comes live (it started before
    we watched) asks again, and waits for that snapshot before sending more."""

    def __init__(self, invocation_id: str) -> None:
        self.invocation_id = invocation_id
        self.layer: Any = None
        self.channel = ""
        self.pending: asyncio.Future[Any] | None = None
        self.held: list[dict[str, Any]] = []  # live steps after a gap, until the snapshot comes
        self.announced = 0.0

    async def _join(self) -> bool:
        if self.channel:
            return True
        from channels.layers import get_channel_layer

        self.layer = get_channel_layer()
        if self.layer is None:
            return False
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(invocation_group(self.invocation_id), self.channel)
        await audience.joined()
        self.announced = time.monotonic()
        await snapshot_request(self.layer, invocation_id=self.invocation_id, reply_to=self.channel)
        return True

    async def wait(self, steps: _Steps, gone: asyncio.Future[None], timeout_s: float) -> bool:
        """Send what arrives within ``timeout_s``; True when the client went away."""
        if not await self._join():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(gone), timeout_s)
            return gone.done()
        if time.monotonic() - self.announced > ANNOUNCE_INTERVAL_S:
            self.announced = time.monotonic()
            await audience.announce()
        if self.pending is None:  # one receive at a time, never cancelled midway
            self.pending = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _ = await asyncio.wait({self.pending, gone}, timeout=timeout_s, return_when="FIRST_COMPLETED")
        if gone in done:
            return True
        if self.pending in done:
            message, self.pending = self.pending.result(), None
            for batch in message.get("batches", []):
                if batch.get("invocation_id") == self.invocation_id:
                    await self._batch(steps, batch)
        return False

    async def _batch(self, steps: _Steps, batch: dict[str, Any]) -> None:
        events = [item["event"] for item in batch.get("items", []) if item.get("event")]
        if batch.get("snapshot"):
            for event in sorted([*events, *self.held], key=lambda e: e["seq"]):
                await steps.write(event, event.get("data"))
            self.held = []
            return
        for event in events:
            if self.held or event["seq"] > steps.sent + 1:  # missed some: wait for the snapshot
                if not self.held:
                    await snapshot_request(self.layer, invocation_id=self.invocation_id, reply_to=self.channel)
                self.held.append(event)
            else:
                await steps.write(event, event.get("data"))

    async def close(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
        if self.channel:
            await audience.left()
            with contextlib.suppress(Exception):
                await self.layer.group_discard(invocation_group(self.invocation_id), self.channel)


async def _follow(steps: _Steps, trace: Any, gone: asyncio.Future[None]) -> bool:
    """Stream a trace this process runs until its final state; True when the client went away."""
    items: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    trace.listeners.append(items.put_nowait)
    try:
        # What it holds so far (a step seen again through the listener is skipped by seq).
        ended = False
        for event in list(trace.events):
            await steps.write(event.stored(), event.data)
            ended |= event.kind == K.RESPONSE
        if ended:  # it is being recorded (its final state may have been sent before we listened)
            return False
        while True:
            getter = asyncio.ensure_future(items.get())
            waiting: set[asyncio.Future[Any]] = {getter, gone}
            done, _ = await asyncio.wait(waiting, timeout=KEEPALIVE_S, return_when="FIRST_COMPLETED")
            if getter not in done:
                getter.cancel()
                if gone in done:
                    return True
                await _write(steps.send, sse.comment("keep-alive"))
                continue
            item = getter.result()
            if (state := item.get("state")) is not None and state.get("status") in FINAL_STATUSES:
                return False
            if (event := item.get("event")) is not None:
                await steps.write(event.stored(), event.data)
    finally:
        with contextlib.suppress(ValueError):
            trace.listeners.remove(items.put_nowait)

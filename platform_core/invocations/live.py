"""Live trace events for the dashboard: batched, and not sent at all while nobody watches.

Every running invocation's trace hands its events and state changes to the ``Outbox`` of its
event loop. The outbox sends what has gathered as one channel-layer message per group, a few
milliseconds at a time (``FLUSH_INTERVAL_S``), instead of one message per event:

    {"type": "invocation.batch", "batches": [
        {"invocation_id", "context", "items": [{"event": {...}} | {"state": {...}}, ...]}, ...]}

to the group of all invocations, and the batch of one invocation to ``invocation.<id>``. Items
keep their order. Live viewers announce themselves (``Audience``): without Redis, a count in
this process (the in-memory channel layer reaches no other process anyway); with Redis, a key
that each viewer refreshes while connected. When nobody watches, traces queue nothing (the
stored trace is the record; a viewer that joins late gets it from the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

ALL_INVOCATIONS_GROUP = "invocations"
FLUSH_INTERVAL_S = 0.005
# A viewer refreshes its presence this often (Redis); it lasts three times as long.
ANNOUNCE_INTERVAL_S = 10.0
# How often a gateway process looks whether anyone watches (Redis).
AUDIENCE_CHECK_S = 1.0


def invocation_group(invocation_id: str) -> str:
    return f"invocation.{invocation_id}"


class Audience:
    """Whether any live viewer is connected (to this process, or to any, with Redis)."""

    def __init__(self) -> None:
        self.local = 0
        self._remote_until = 0.0
        self._checked = 0.0
        self._checking = False

    @property
    def _key(self) -> str:
        return f"{settings.PLATFORM_REDIS_PREFIX}:live:watching"

    def watching(self) -> bool:
        """Cheap enough for every trace event: a counter, or a flag refreshed in the background."""
        if self.local:
            return True
        if not settings.PLATFORM_REDIS_URL:
            return False
        now = time.monotonic()
        if now - self._checked >= AUDIENCE_CHECK_S and not self._checking:
            self._checking = True
            _background(self._check())
        return now < self._remote_until

    async def _check(self) -> None:
        try:
            ttl_ms = await _redis().pttl(self._key)
            self._remote_until = time.monotonic() + ttl_ms / 1000 if ttl_ms > 0 else 0.0
        except Exception as exc:  # live view is best effort
            log.warning("cannot tell whether anyone watches live events: %s", exc)
        finally:
            self._checked, self._checking = time.monotonic(), False

    async def joined(self) -> None:
        self.local += 1
        await self.announce()

    async def left(self) -> None:
        self.local = max(0, self.local - 1)

    async def announce(self) -> None:
        """Say (again) that a viewer watches; viewers call it every ``ANNOUNCE_INTERVAL_S``."""
        if settings.PLATFORM_REDIS_URL:
            try:
                await _redis().set(self._key, "1", px=int(ANNOUNCE_INTERVAL_S * 3000))
            except Exception as exc:
                log.warning("cannot announce a live viewer: %s", exc)


audience = Audience()

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
_tasks: set[asyncio.Task[Any]] = set()


def _redis() -> Any:
    loop = asyncio.get_running_loop()
    if (client := _clients.get(loop)) is None:
        import redis.asyncio as redis  # only with REDIS_URL

        client = _clients[loop] = redis.from_url(settings.PLATFORM_REDIS_URL)
    return client


def _background(coroutine: Any) -> None:
    task = asyncio.ensure_future(coroutine)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


class Outbox:
    """The live messages of one event loop's invocations, sent in batches."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.pending: dict[str, dict[str, Any]] = {}
        self.wake = asyncio.Event()
        self.sent = asyncio.Event()  # set whenever nothing is pending any more
        self.sender = asyncio.get_running_loop().create_task(self._send_forever())

    def put(self, invocation_id: str, context: dict[str, str], item: dict[str, Any]) -> None:
        batch = self.pending.get(invocation_id)
        if batch is None:
            batch = self.pending[invocation_id] = {"invocation_id": invocation_id, "context": context, "items": []}
        batch["items"].append(item)
        self.sent.clear()
        self.wake.set()

    async def _send_forever(self) -> None:
        while True:
            await self.wake.wait()
            await asyncio.sleep(FLUSH_INTERVAL_S)  # let the rest of this moment's events gather
            self.wake.clear()
            batches, self.pending = list(self.pending.values()), {}
            try:
                await self.layer.group_send(ALL_INVOCATIONS_GROUP, {"type": "invocation.batch", "batches": batches})
                for batch in batches:
                    await self.layer.group_send(
                        invocation_group(batch["invocation_id"]), {"type": "invocation.batch", "batches": [batch]}
                    )
            except Exception:  # live view is best effort; the stored trace is the record
                log.warning("could not publish %d live trace batch(es)", len(batches), exc_info=True)
            if not self.pending:
                self.sent.set()

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Wait (bounded) until what is pending has been sent."""
        if self.pending or self.wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sent.wait(), timeout_s)


_outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Outbox] = weakref.WeakKeyDictionary()


def outbox() -> Outbox | None:
    """The running loop's outbox, or None without a channel layer."""
    loop = asyncio.get_running_loop()
    found = _outboxes.get(loop)
    if found is None or found.sender.done():
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return None
        found = _outboxes[loop] = Outbox(layer)
    return found

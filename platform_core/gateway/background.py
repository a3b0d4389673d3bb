"""The tasks each gateway process runs beside its requests: the async invocation queue's
consumer and the watch for cancel requests. Started with the server (ASGI lifespan, uvicorn)
or at the first request (daphne, which has no lifespan)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

log = logging.getLogger(__name__)

_started: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[asyncio.Task[None]]] = weakref.WeakKeyDictionary()


def ensure_started() -> None:
    """Start this loop's background tasks unless they run already (cheap: called per request)."""
    loop = asyncio.get_running_loop()
    tasks = _started.get(loop)
    if tasks is not None and not any(task.done() for task in tasks):
        return
    from platform_core.gateway import cancellation, invocation_queue

    for task in tasks or []:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("gateway background task failed; starting it again", exc_info=task.exception())
        task.cancel()
    _started[loop] = [
        loop.create_task(invocation_queue.consume_forever(), name="invocation-queue"),
        loop.create_task(cancellation.watch_forever(), name="cancel-requests"),
    ]


class Lifespan:
    """ASGI lifespan: start the background tasks when the server starts."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                ensure_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

"""An invocation's trace while it runs: ordered events, streamed live, stored at the end.

Each event is one arrow of the seed's sequence diagram. Events go to the channel layer as
they happen (group ``invocations`` and ``invocation.<id>``) so a dashboard can draw the
diagram live; the whole trace is written to the database once, with the final state of the
invocation, in one transaction (see ``services.invocation_finish``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from platform_core.invocations.vocabulary import EventKind, Participant, Phase

log = logging.getLogger(__name__)

ALL_INVOCATIONS_GROUP = "invocations"
# Publishers still flushing after their invocation answered (the loop keeps only weak references).
_closing: set[asyncio.Task] = set()


def invocation_group(invocation_id: str) -> str:
    return f"invocation.{invocation_id}"


@dataclass(frozen=True, slots=True)
class TraceEvent:
    seq: int
    source: str
    target: str
    kind: str
    phase: int
    detail: str
    offset_ms: float

    # Structured facts for live viewers (e.g. a progress event's percent); not stored.
    data: dict[str, Any] | None = None

    def stored(self) -> dict[str, Any]:
        """The event as the invocation's ``trace`` document keeps it (and the API shows it)."""
        # Not dataclasses.asdict: it deep-copies every field, on every event of every invocation.
        return {
            "seq": self.seq,
            "phase": self.phase,
            "offset_ms": self.offset_ms,
            "source": self.source,
            "target": self.target,
            "kind": self.kind,
            "detail": self.detail,
        }

    def as_message(self) -> dict[str, Any]:
        """The event as live viewers get it: the stored fields and the structured ``data``."""
        return {**self.stored(), "data": self.data}


class Trace:
    def __init__(self, invocation_id: str, *, publish: bool = True, context: dict[str, str] | None = None) -> None:
        """``context`` (tenant, session, request ids...) goes with every live message, so that a
        viewer can pick out its own invocations before it knows their ids."""
        self.invocation_id = invocation_id
        self.context = dict(context or {})
        self.started_ns = time.time_ns()
        self._started_perf = time.perf_counter()
        self.events: list[TraceEvent] = []
        self._queue: asyncio.Queue[dict[str, Any] | None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        if publish:
            from channels.layers import get_channel_layer

            layer = get_channel_layer()
            if layer is not None:
                self._queue = asyncio.Queue()
                self._publisher = asyncio.create_task(self._publish(layer))

    def add(
        self,
        kind: EventKind,
        detail: str = "",
        *,
        phase: Phase | None = None,
        source: Participant | None = None,
        target: Participant | None = None,
        at_ns: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> TraceEvent:
        """Record an arrow of ``kind`` now (or at ``at_ns``, a Unix time in ns reported by another
        process). Phase, source and target are the kind's own unless given."""
        if at_ns is None:
            offset = (time.perf_counter() - self._started_perf) * 1000
        else:
            offset = (at_ns - self.started_ns) / 1e6
        event = TraceEvent(
            len(self.events) + 1,
            (source or kind.source).value,
            (target or kind.target).value,
            kind.value,
            int(phase or kind.phase),
            detail[:2000],
            round(offset, 3),
            data,
        )
        self.events.append(event)
        if self._queue is not None:
            self._queue.put_nowait(
                {
                    "type": "invocation.event",
                    "invocation_id": self.invocation_id,
                    "context": self.context,
                    "event": event.as_message(),
                }
            )
        return event

    def publish_state(self, message: dict[str, Any]) -> None:
        """Send a non-arrow update (status, result) to live viewers, in order with the arrows."""
        if self._queue is not None:
            self._queue.put_nowait(
                {"type": "invocation.state", "invocation_id": self.invocation_id, "context": self.context, **message}
            )

    async def _publish(self, layer: Any) -> None:
        # Its own reference: close_soon() drops self._queue while messages are still queued.
        queue = self._queue
        assert queue is not None
        while (message := await queue.get()) is not None:
            try:
                await layer.group_send(ALL_INVOCATIONS_GROUP, message)
                await layer.group_send(invocation_group(self.invocation_id), message)
            except Exception:  # live view is best effort; the stored trace is the record
                log.warning("could not publish trace event of %s", self.invocation_id, exc_info=True)

    def close_soon(self) -> None:
        """Stop publishing once the queued events are out, without waiting for it."""
        if self._queue is not None:
            self._queue.put_nowait(None)
            self._queue = None
            if self._publisher is not None:
                _closing.add(self._publisher)
                self._publisher.add_done_callback(_closing.discard)

    async def close(self) -> None:
        """Flush live events (bounded wait) and stop publishing."""
        if self._queue is None or self._publisher is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._publisher), 2.0)
        self._queue = None

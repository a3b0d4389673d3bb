"""An invocation's trace while it runs: ordered events, streamed live, stored at the end.

Each event is one arrow of the seed's sequence diagram. While anyone watches, events go to the
channel layer in batches (``live``) so a dashboard can draw the diagram live; the whole trace
is written to the database once, with the final state of the invocation, in one statement
(see ``services.invocation_finish``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from platform_core.invocations import live, snapshots
from platform_core.invocations.vocabulary import EventKind, Participant, Phase

if TYPE_CHECKING:
    from platform_core.observability.tracing import Propagation

log = logging.getLogger(__name__)


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
        self._publish = publish
        if publish:  # a viewer who arrives mid-run asks for what it holds so far
            snapshots.trace_running(self)
        # Where this trace sits in a distributed (W3C) trace, if anywhere (observability.tracing).
        self.propagation: Propagation | None = None
        # Whoever follows this invocation in this process (an SSE stream, an MCP call): each gets
        # every item as it happens, ``{"event": TraceEvent}`` or ``{"state": {...}}``.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

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
        if self.listeners:
            for listener in self.listeners:
                listener({"event": event})
        self._send_live({"event": event.as_message()})
        return event

    def traceparent(self, event: TraceEvent | None = None) -> str:
        """The W3C ``traceparent`` for a call made at ``event`` (the event that opens its span);
        "" when this invocation is not traced."""
        return "" if self.propagation is None else self.propagation.traceparent(event)

    @property
    def tracestate(self) -> str:
        return "" if self.propagation is None else self.propagation.tracestate

    def adopt(self, other: Trace, *, skip: frozenset[EventKind] = frozenset()) -> None:
        """Add the events of ``other`` (recorded elsewhere, e.g. an allocation made on this
        invocation's behalf) at the times they happened, but for the kinds in ``skip``."""
        for event in other.events:
            if event.kind in skip:
                continue
            self.add(
                EventKind(event.kind),
                event.detail,
                phase=Phase(event.phase),
                source=Participant(event.source),
                target=Participant(event.target),
                at_ns=other.started_ns + int(event.offset_ms * 1e6),
                data=event.data,
            )

    def publish_state(self, message: dict[str, Any]) -> None:
        """Send a non-arrow update (status, result) to live viewers, in order with the arrows."""
        for listener in self.listeners:
            listener({"state": message})
        self._send_live({"state": message})

    def _send_live(self, item: dict[str, Any]) -> None:
        if self._publish and live.audience.watching() and (box := live.outbox()) is not None:
            box.put(self.invocation_id, self.context, item)

    async def close(self) -> None:
        """Wait (bounded) until the live events queued so far are sent (tests; the gateway does not wait)."""
        if self._publish and (box := live.outbox()) is not None:
            await box.drain()

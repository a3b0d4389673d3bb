"""Phase timings, derived from an invocation's trace (never measured separately)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

# phase -> (kinds that open it, kinds that close it); the first opener and last closer count.
PHASES: dict[str, tuple[set[str], set[str]]] = {
    "allocation": ({"allocate_request"}, {"worker_allocated", "allocation_failed"}),
    "init": ({"init_request", "init_cached"}, {"init_response", "init_cached"}),
    "execution": ({"invoke_request"}, {"completed", "failed", "worker_lost", "timeout"}),
    "release": ({"release_request", "cancel_request"}, {"released", "cancelled", "release_failed"}),
    "total": ({"request"}, {"response"}),
}


class TimedEvent(Protocol):
    kind: str
    offset_ms: float


def phase_timings(events: Iterable[TimedEvent]) -> dict[str, float | None]:
    """Milliseconds per phase; None for a phase the invocation never reached or finished."""
    opened: dict[str, float] = {}
    closed: dict[str, float] = {}
    for event in events:
        for phase, (openers, closers) in PHASES.items():
            if event.kind in openers and phase not in opened:
                opened[phase] = event.offset_ms
            if event.kind in closers and phase in opened:
                closed[phase] = event.offset_ms
    return {
        phase: round(closed[phase] - opened[phase], 3) if phase in opened and phase in closed else None
        for phase in PHASES
    }

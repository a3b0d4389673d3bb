"""Phase timings, derived from an invocation's trace (never measured separately)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from platform_core.invocations.vocabulary import TimedPhase


class TimedEvent(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def offset_ms(self) -> float: ...


def phase_timings(events: Iterable[TimedEvent]) -> dict[str, float | None]:
    """Milliseconds per timed phase (``TimedPhase``): from the first event that opens it to the
    last that closes it; None for a phase the invocation never reached or finished."""
    opened: dict[str, float] = {}
    closed: dict[str, float] = {}
    for event in events:
        for phase in TimedPhase:
            if event.kind in phase.opens and phase not in opened:
                opened[phase] = event.offset_ms
            if event.kind in phase.closes and phase in opened:
                closed[phase] = event.offset_ms
    return {
        phase.value: round(closed[phase] - opened[phase], 3) if phase in opened and phase in closed else None
        for phase in TimedPhase
    }

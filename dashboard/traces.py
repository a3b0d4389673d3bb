"""An invocation's trace as the dashboard shows it: rows of arrows, phases, participant labels.

Stored events (an invocation's ``trace`` document) and live ones (the dicts sent on the channel
layer) become the same row dicts, so one template fragment draws both; the browser draws the
sequence diagram from the rows' ``data-*`` attributes, one arrow per row
(``static/dashboard/trace-view.js``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from platform_core.invocations.vocabulary import TIMING_PARTS, EventKind, Participant, Style, TimedPhase

PARTICIPANT_LABELS: dict[str, str] = dict(Participant.choices)

_BACKEND = re.compile(r"\b(process|docker)\b backend")
_RUNTIME = re.compile(r"^PluginSpec\((\w+),")
_PLUGIN = re.compile(r'^getPlugin\("(.+)"\)$')
_WORKER_PREFIX = re.compile(r"^worker-\d+ ")
_PERCENT = re.compile(r"(-?\d+\.\d{2,})%")


def event_hints(kind: str, detail: str) -> dict[str, str]:
    """What an event tells about the diagram's participants (worker id, backend, runtime)."""
    if kind == EventKind.WORKER_ALLOCATED and detail:
        return {"worker": detail}
    if kind == EventKind.WORKER_ALLOCATING and (match := _BACKEND.search(detail)):
        return {"backend": match.group(1)}
    if kind == EventKind.LOOKUP_RESULT and (match := _RUNTIME.match(detail)):
        return {"runtime": match.group(1)}
    if kind == EventKind.LOOKUP and (match := _PLUGIN.match(detail)):
        return {"plugin": match.group(1)}
    return {}


def event_label(kind: str, detail: str) -> str:
    """What an arrow says: its detail without what the diagram already shows (a lifecycle
    event's worker id) and with percentages rounded (``Progress(16.6667%`` → ``Progress(16.7%``)."""
    label = _WORKER_PREFIX.sub("", detail) if kind.startswith("worker_") else detail
    return _PERCENT.sub(lambda m: f"{round(float(m.group(1)), 1):g}%", label) or kind


def _is_failure(kind: str) -> bool:
    try:
        return EventKind(kind).style is Style.FAILURE
    except ValueError:
        return False


def _field(event: Any, name: str) -> Any:
    return event.get(name) if isinstance(event, dict) else getattr(event, name)


def trace_row(event: Any) -> dict[str, Any]:
    """One arrow, from a stored ``InvocationEvent`` or a live event dict."""
    kind, detail = _field(event, "kind"), _field(event, "detail") or ""
    source, target = _field(event, "source"), _field(event, "target")
    return {
        "seq": _field(event, "seq"),
        "phase": _field(event, "phase"),
        "offset_ms": _field(event, "offset_ms"),
        "source": source,
        "target": target,
        "source_label": PARTICIPANT_LABELS.get(source, source),
        "target_label": PARTICIPANT_LABELS.get(target, target),
        "kind": kind,
        "detail": detail,
        "label": event_label(kind, detail),
        "failure": _is_failure(kind),
        "hints": event_hints(kind, detail),
    }


def trace_rows(events: Iterable[Any]) -> list[dict[str, Any]]:
    return [trace_row(event) for event in events]


def progress_percent(event: dict[str, Any]) -> float | None:
    """A live progress event's percent (structured ``data``), clamped to 0..100."""
    data = event.get("data") or {}
    if event.get("kind") != EventKind.PROGRESS or not isinstance(data.get("percent"), int | float):
        return None
    return max(0.0, min(100.0, float(data["percent"])))


TIMING_PHASES = tuple(part.value for part in TIMING_PARTS)


def invocation_timings(invocation: Any) -> dict[str, float | None]:
    return {phase.value: getattr(invocation, f"{phase.value}_ms") for phase in TimedPhase}


def timing_segments(timings: Mapping[str, float | None]) -> list[dict[str, Any]]:
    """The stacked timing bar: each phase's share of the total; the rest is the gateway's own work."""
    total = timings.get("total")
    if not total or total <= 0:
        return []
    segments: list[dict[str, Any]] = []
    for phase in TIMING_PHASES:
        if value := timings.get(phase):
            segments.append({"phase": phase, "ms": value, "percent": round(min(value / total, 1.0) * 100, 2)})
    used = sum(s["percent"] for s in segments)
    if used < 100:
        rest = max(total - sum(s["ms"] for s in segments), 0.0)
        segments.append({"phase": "other", "ms": rest, "percent": round(100 - used, 2)})
    return segments

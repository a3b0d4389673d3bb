"""An invocation's trace as a waterfall: bars true to time, and the critical path through them.

One bar for the whole invocation, one per seed phase it went through, and one per timed span
inside a phase (``vocabulary.Span``: allocation, spawn, readiness, Init, Invoke, each progress
step, release...). A span still open while the invocation runs has no end yet (the browser
draws it up to "now"); one still open when the invocation has ended is cut at its last event
and marked failed.

The critical path is computed as tracing tools do (Jaeger): from the end of the invocation
backwards, the child that ended last before the cursor is on the path, recursively; time no
child covers is the parent's own. Every bar knows how much of the path is its own time.

The same document serves the live view (recomputed per batch of events), the stored
invocation's page, replay (the browser cuts bars at the replay's time) and the comparison of
two invocations.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from platform_core.invocations.vocabulary import EventKind, Phase, Span, Style

_ENDS = {EventKind.RESPONSE, EventKind.REFUSED}
# How many of the critical path's biggest parts the summary names.
PATH_PARTS = 6


@dataclass
class Bar:
    key: str  # stable across invocations: "invocation", "phase-3", "allocate", "step-2"
    label: str
    depth: int
    start: float
    end: float | None  # None: still open (the invocation runs)
    phase: int
    kind: str  # invocation | phase | span | step
    title: str = ""
    failed: bool = False
    critical_ms: float = 0.0  # how much of the critical path is this bar's own time

    @property
    def ms(self) -> float | None:
        return None if self.end is None else round(self.end - self.start, 3)


@dataclass(frozen=True)
class _Event:
    seq: int
    kind: str
    phase: int
    offset: float
    detail: str


def _events(events: Iterable[Any]) -> list[_Event]:
    def field(event: Any, name: str) -> Any:
        return event.get(name) if isinstance(event, Mapping) else getattr(event, name)

    found = [
        _Event(field(e, "seq"), field(e, "kind"), field(e, "phase"), float(field(e, "offset_ms")), field(e, "detail"))
        for e in events
    ]
    return sorted(found, key=lambda e: e.seq)


def _style(kind: str) -> Style | None:
    try:
        return EventKind(kind).style
    except ValueError:
        return None


def _phase_bars(events: list[_Event], *, finished: bool) -> list[Bar]:
    by_phase: dict[int, list[_Event]] = defaultdict(list)
    for event in events:
        by_phase[event.phase].append(event)
    numbers = sorted(by_phase)
    bars = []
    for index, number in enumerate(numbers):
        own = by_phase[number]
        start, last = min(e.offset for e in own), max(e.offset for e in own)
        if index + 1 < len(numbers):
            end: float | None = max(last, min(e.offset for e in by_phase[numbers[index + 1]]))
        else:
            end = last if finished or number == Phase.RESPONSE else None
        try:
            label = f"{number}. {Phase(number).title}"
        except ValueError:
            label = f"Phase {number}"
        bars.append(
            Bar(
                f"phase-{number}",
                label,
                1,
                start,
                end,
                number,
                "phase",
                failed=any(_style(e.kind) is Style.FAILURE for e in own),
            )
        )
    return bars


def _span_bars(span: Span, events: list[_Event], *, finished: bool, now: float, within: Bar | None) -> list[Bar]:
    """The bars of one span: none, one, or (steps) one per step."""
    depth = 3 if span.parent else 2
    opened = next((e for e in events if e.kind in span.opens and (within is None or e.offset >= within.start)), None)
    if opened is None:
        return []
    after = [e for e in events if e.seq > opened.seq]
    if not span.steps:
        closing = next((e for e in after if e.kind in span.closes), None)
        end = closing.offset if closing else (None if not finished else now)
        failed = (closing is None and finished) or (closing is not None and _style(closing.kind) is Style.FAILURE)
        return [Bar(span.value, span.label, depth, opened.offset, end, int(span.phase), "span", failed=failed)]
    # Steps: each ``closes`` event ends one, until the parent span ends.
    limit = within.end if within is not None and within.end is not None else None
    bars: list[Bar] = []
    begun = opened.offset
    for event in after:
        if limit is not None and event.offset > limit:
            break
        if event.kind in span.closes:
            number = len(bars) + 1
            bars.append(
                Bar(
                    f"{span.value}-{number}",
                    f"{span.label} {number}",
                    depth,
                    begun,
                    event.offset,
                    int(span.phase),
                    "step",
                    title=event.detail,
                )
            )
            begun = event.offset
    if bars:  # the time after the last step: up to the parent's end, or still running
        end = limit if limit is not None else (None if not finished else now)
        if end is None or end > begun:
            label = f"{span.label} {len(bars) + 1}" if end is None else "Finish"
            bars.append(Bar(f"{span.value}-{len(bars) + 1}", label, depth, begun, end, int(span.phase), "step"))
    return bars


def _critical(bar: Bar, children: dict[str, list[Bar]], limit: float, now: float, out: list[list[Any]]) -> None:
    """Jaeger's critical path, from ``min(bar's end, limit)`` back to the bar's start."""
    cursor = min(bar.end if bar.end is not None else now, limit)
    for child in sorted(children.get(bar.key, []), key=lambda c: c.end if c.end is not None else now, reverse=True):
        child_end = min(child.end if child.end is not None else now, cursor)
        if child.start >= cursor or child_end <= bar.start:
            continue
        if child_end < cursor:
            out.append([bar.key, child_end, cursor])
        _critical(child, children, child_end, now, out)
        cursor = max(child.start, bar.start)
        if cursor <= bar.start:
            break
    if cursor > bar.start:
        out.append([bar.key, bar.start, cursor])


def waterfall(events: Iterable[Any], *, finished: bool, failed: bool = False) -> dict[str, Any]:
    """The waterfall of a trace (stored events, live event dicts or ``TraceEvent`` objects).

    ``finished``: the invocation has ended (open spans are cut, not drawn to "now");
    ``failed``: it ended in an error (the invocation's bar is drawn as failed).
    """
    ordered = _events(events)
    if not ordered:
        return {"bars": [], "critical": [], "path": [], "now_ms": 0.0, "total_ms": None, "finished": finished}
    now = max(e.offset for e in ordered)
    end_event = next((e for e in ordered if e.kind in _ENDS), None)
    total = end_event.offset if end_event else (now if finished else None)
    root = Bar("invocation", "Invocation", 0, min(0.0, ordered[0].offset), total, 0, "invocation", failed=failed)
    phases = _phase_bars(ordered, finished=finished)
    children: dict[str, list[Bar]] = {"invocation": list(phases)}
    bars = [root]
    by_key: dict[str, Bar] = {}
    for phase in phases:
        bars.append(phase)
        for span in (s for s in Span if int(s.phase) == phase.phase):
            parent = by_key.get(span.parent.value) if span.parent else None
            if span.parent and parent is None:
                continue  # its parent never began
            found = _span_bars(span, ordered, finished=finished, now=now, within=parent)
            for item in found:
                by_key[item.key] = item
            children.setdefault(parent.key if parent else phase.key, []).extend(found)
            if parent is None:
                bars.extend(found)
            else:  # right after its parent and the parent's earlier children
                at = bars.index(parent) + 1
                while at < len(bars) and bars[at].depth > parent.depth:
                    at += 1
                bars[at:at] = found
    segments: list[list[Any]] = []
    _critical(root, children, root.end if root.end is not None else now, now, segments)
    segments.sort(key=lambda s: s[1])
    own: dict[str, float] = defaultdict(float)
    for key, start, end in segments:
        own[key] += end - start
    for bar in bars:
        bar.critical_ms = round(own.get(bar.key, 0.0), 3)
    return {
        "bars": [{**asdict(b), "ms": b.ms} for b in bars],
        "critical": [[k, round(s, 3), round(e, 3)] for k, s, e in segments],
        "path": _path_parts(bars, (root.end if root.end is not None else now) - root.start),
        "now_ms": now,
        "total_ms": total,
        "finished": finished,
    }


def _path_parts(bars: list[Bar], span_total: float) -> list[dict[str, Any]]:
    """The critical path's biggest parts (all progress steps counted as one)."""
    parts: dict[str, dict[str, Any]] = {}
    steps = [b for b in bars if b.kind == "step" and b.critical_ms > 0]
    for bar in bars:
        if bar.critical_ms > 0 and bar.kind != "step":
            parts[bar.key] = {"key": bar.key, "label": bar.label, "ms": bar.critical_ms}
    if steps:
        numbered = [b for b in steps if b.label != "Finish"]
        label = f"{len(numbered)} progress steps" if len(numbered) != 1 else "Progress step"
        parts["steps"] = {"key": "steps", "label": label, "ms": round(sum(b.critical_ms for b in steps), 3)}
    ordered = sorted(parts.values(), key=lambda p: p["ms"], reverse=True)[:PATH_PARTS]
    return [{**p, "percent": round(100 * p["ms"] / span_total, 1) if span_total > 0 else 0.0} for p in ordered]


def bar_durations(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The bars of a waterfall by key (steps left out), for comparing two invocations."""
    return {b["key"]: b for b in document["bars"] if b["kind"] != "step"}

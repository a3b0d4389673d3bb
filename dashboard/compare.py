"""Two invocations side by side: phase by phase and span by span, with the differences marked.

Typically a cold and a warm call of the same plugin, or the same call before and after a
change. Bars are matched by their key (``waterfall.Bar.key``: ``phase-3``, ``spawn``...);
progress steps are left out (the Invoke span holds them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dashboard.live import invocation_summary
from dashboard.waterfall import bar_durations, waterfall
from platform_core.invocations.models import Invocation, Status

# A difference worth marking: at least this many ms and this share of the larger value.
NOTABLE_MS = 1.0
NOTABLE_SHARE = 0.2


@dataclass(frozen=True)
class Difference:
    key: str
    label: str
    depth: int
    a_ms: float | None
    b_ms: float | None

    @property
    def delta_ms(self) -> float | None:
        if self.a_ms is None or self.b_ms is None:
            return None
        return round(self.b_ms - self.a_ms, 3)

    @property
    def notable(self) -> bool:
        """Only in one of them, or apart by at least NOTABLE_MS and NOTABLE_SHARE of the larger."""
        if (self.a_ms is None) != (self.b_ms is None):
            return True
        if self.delta_ms is None:
            return False
        larger = max(abs(self.a_ms or 0.0), abs(self.b_ms or 0.0))
        return abs(self.delta_ms) >= NOTABLE_MS and abs(self.delta_ms) >= NOTABLE_SHARE * larger

    @property
    def ratio(self) -> float | None:
        if not self.a_ms or self.b_ms is None:
            return None
        return round(self.b_ms / self.a_ms, 2)


def bars_compared(a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    """Every bar of either waterfall (in A's order, then B's own), with both durations."""
    bars_a, bars_b = bar_durations(a), bar_durations(b)
    keys = list(bars_a)
    previous: str | None = None
    for key in bars_b:  # B's own bars where B has them: right after the bar before them
        if key not in bars_a:
            keys.insert(keys.index(previous) + 1 if previous is not None and previous in keys else len(keys), key)
        previous = key
    rows = []
    for key in keys:
        either = bars_a.get(key) or bars_b[key]
        rows.append(
            Difference(
                key,
                either["label"],
                either["depth"],
                bars_a[key]["ms"] if key in bars_a else None,
                bars_b[key]["ms"] if key in bars_b else None,
            )
        )
    return rows


def _keys_differing(a: Any, b: Any) -> set[str]:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return set() if a == b else {"(whole)"}
    return {key for key in a.keys() | b.keys() if a.get(key) != b.get(key) or (key in a) != (key in b)}


def invocations_compared(a: Invocation, b: Invocation) -> dict[str, Any]:
    """The compare page's context."""
    sides = []
    for invocation in (a, b):
        document = waterfall(
            invocation.trace,
            finished=invocation.status != Status.RUNNING,
            failed=invocation.status not in {Status.SUCCEEDED, Status.RUNNING},
        )
        sides.append({**invocation_summary(invocation), "waterfall": document})
    scale = max((side["waterfall"]["total_ms"] or side["waterfall"]["now_ms"] or 0.0) for side in sides)
    return {
        "a": sides[0],
        "b": sides[1],
        "scale_ms": scale,
        "rows": bars_compared(sides[0]["waterfall"], sides[1]["waterfall"]),
        "arguments_differ": sorted(_keys_differing(a.arguments, b.arguments)),
        "results_differ": sorted(_keys_differing(a.result, b.result)),
        "same_arguments": json.dumps(a.arguments, sort_keys=True) == json.dumps(b.arguments, sort_keys=True),
    }

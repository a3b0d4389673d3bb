"""The trace vocabulary is declared once (Python) and the browser gets it rather than a copy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from platform_core.invocations.timings import phase_timings
from platform_core.invocations.trace import TraceEvent
from platform_core.invocations.vocabulary import EventKind, Phase, TimedPhase, browser_vocabulary

REPO = Path(__file__).resolve().parents[2]


def test_every_kind_knows_its_arrow_and_phase():
    for kind in EventKind:
        assert kind.source and kind.target and kind.phase in Phase and kind.style
    assert EventKind.lifecycle("READY") is EventKind.WORKER_READY
    with pytest.raises(ValueError):
        EventKind.lifecycle("SLEEPING")


def test_timings_are_spans_between_kinds():
    events = [
        TraceEvent(1, "client", "gateway", EventKind.REQUEST, 1, "", 0.0),
        TraceEvent(2, "gateway", "runtime_client", EventKind.ALLOCATE_REQUEST, 3, "", 1.0),
        TraceEvent(3, "runtime_client", "gateway", EventKind.WORKER_ALLOCATED, 3, "", 5.5),
        TraceEvent(4, "gateway", "client", EventKind.RESPONSE, 7, "", 9.0),
    ]
    timings = phase_timings(events)
    assert timings == {"allocation": 4.5, "init": None, "execution": None, "release": None, "total": 9.0}
    assert set(timings) == {phase.value for phase in TimedPhase}


def test_the_browser_gets_the_vocabulary_and_holds_no_copy(admin_client):
    vocabulary = browser_vocabulary()
    assert json.loads(json.dumps(vocabulary)) == vocabulary
    assert vocabulary["kinds"]["progress"] == {
        "source": "worker",
        "target": "gateway",
        "phase": 5,
        "style": "reply",
        "detail": False,
    }
    assert vocabulary["kinds"]["worker_spawning"]["detail"] is True  # lifecycle detail, folded by the dashboard
    page = admin_client.get("/").content.decode()
    embedded = re.search(r'<script id="trace-vocabulary" type="application/json">(.*?)</script>', page, re.S)
    assert embedded and json.loads(embedded.group(1)) == vocabulary
    script = "\n".join(path.read_text() for path in (REPO / "static" / "dashboard").glob("*.js"))
    quoted = set(re.findall(r"""["'`]([a-z_]+)["'`]""", script))
    copies = quoted & ({k.value for k in EventKind} - {"log"})
    assert not copies, f"dashboard JavaScript spells event kinds itself: {sorted(copies)}"
    titles = [p.title.upper() for p in Phase] + [p.title for p in Phase]
    assert not [t for t in titles if t in script], "dashboard JavaScript spells phase titles itself"

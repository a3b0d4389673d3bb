"""Live view of invocations: channel-layer messages in, htmx out-of-band HTML fragments out.

A ``LiveFollower`` belongs to one WebSocket. It picks the invocation to show (one by id, the
ones of a dashboard tab's session, or simply the latest), forwards each arrow as a row of the
trace list (the browser redraws the sequence diagram from the rows), moves the progress bar,
and on the final state tells its consumer whether the stored trace must be sent: when any
arrow was missed (joined late), the stored trace, complete by then, replaces what was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.template.loader import render_to_string

from dashboard.traces import invocation_timings, progress_percent, timing_segments, trace_row, trace_rows
from platform_core.invocations.models import FINAL_STATUSES, Invocation, Status

LIVE_EVENTS_ID = "live-events"


@dataclass
class LiveInvocation:
    """What the live panel's header shows."""

    invocation_id: str = ""
    plugin: str = ""
    status: str = ""
    http_status: int | None = None
    worker_id: str = ""
    error: dict[str, Any] | None = None
    timings: dict[str, float | None] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def segments(self) -> list[dict[str, Any]]:
        return timing_segments(self.timings)


@dataclass
class LiveProgress:
    percent: float | None = None
    message: str = ""


def header_html(live: LiveInvocation) -> str:
    return render_to_string("dashboard/partials/live_header.html", {"live": live})


def progress_html(progress: LiveProgress) -> str:
    return render_to_string("dashboard/partials/live_progress.html", {"progress": progress})


def events_html(rows: list[dict[str, Any]], *, append: bool) -> str:
    return render_to_string(
        "dashboard/partials/trace_events.html", {"rows": rows, "list_id": LIVE_EVENTS_ID, "append": append}
    )


def stored_live(invocation: Invocation) -> LiveInvocation:
    return LiveInvocation(
        invocation_id=str(invocation.id),
        plugin=invocation.plugin_name,
        status=invocation.status,
        http_status=invocation.http_status,
        worker_id=invocation.worker_id,
        error={"code": invocation.error_code, "message": invocation.error_message} if invocation.error_code else None,
        timings=invocation_timings(invocation),
    )


class LiveFollower:
    """Which invocation a live panel shows, and the fragments that keep it up to date."""

    def __init__(self, *, session: str = "", invocation_id: str = "") -> None:
        self.session = session
        self.fixed = invocation_id
        self.live = LiveInvocation(invocation_id=invocation_id)
        self.progress = LiveProgress()
        self.last_seq = 0
        self.missed = False

    def _mine(self, message: dict[str, Any]) -> bool:
        if self.fixed:
            return message.get("invocation_id") == self.fixed
        if self.session:
            return (message.get("context") or {}).get("session_id") == self.session
        return True

    def _follow(self, message: dict[str, Any], *, starts: bool) -> str | None:
        """'' to go on with the current invocation, HTML that resets the panel, None to ignore."""
        if not self._mine(message):
            return None
        invocation_id = message["invocation_id"]
        if invocation_id == self.live.invocation_id:
            return ""
        current = self.live.invocation_id
        if current and not self.live.finished and not starts:
            return None  # an older invocation still running while we show a newer one
        self.live = LiveInvocation(invocation_id=invocation_id, status=Status.RUNNING)
        self.progress = LiveProgress()
        self.last_seq, self.missed = 0, False
        return header_html(self.live) + progress_html(self.progress) + events_html([], append=False)

    def on_event(self, message: dict[str, Any]) -> str:
        event = message["event"]
        reset = self._follow(message, starts=event["seq"] == 1)
        if reset is None:
            return ""
        if event["seq"] != self.last_seq + 1:
            self.missed = True
        self.last_seq = max(self.last_seq, event["seq"])
        row = trace_row(event)
        html = reset + events_html([row], append=True)
        if "worker" in row["hints"]:
            self.live.worker_id = row["hints"]["worker"]
        if "plugin" in row["hints"] and not self.live.plugin:
            self.live.plugin = row["hints"]["plugin"]
        if (percent := progress_percent(event)) is not None:
            self.progress = LiveProgress(percent, str((event.get("data") or {}).get("message", "")))
            html += progress_html(self.progress)
        return html

    def on_state(self, message: dict[str, Any]) -> tuple[str, bool]:
        """Fragments for a state change, and whether the stored trace should now be sent."""
        reset = self._follow(message, starts=False)
        if reset is None:
            return "", False
        live = self.live
        live.status = message.get("status", live.status)
        live.plugin = message.get("plugin") or live.plugin
        if "http_status" in message:
            live.http_status = message["http_status"]
        if message.get("timings_ms"):
            live.timings = dict(message["timings_ms"])
        if message.get("error"):
            live.error = message["error"]
        html = reset
        if live.finished and live.status == Status.SUCCEEDED:
            self.progress = LiveProgress(100.0, "Completed")
            html += progress_html(self.progress)
        html += header_html(live)
        return html, live.finished and (self.missed or self.last_seq == 0)

    def on_stored(self, invocation: Invocation) -> str:
        """Replace the panel with the stored invocation (complete: it has finished)."""
        self.live = stored_live(invocation)
        events = invocation.trace
        self.last_seq, self.missed = (events[-1]["seq"] if events else 0), False
        if invocation.status == Status.SUCCEEDED:
            self.progress = LiveProgress(100.0, "Completed")
        return header_html(self.live) + progress_html(self.progress) + events_html(trace_rows(events), append=False)

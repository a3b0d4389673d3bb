"""Live view of invocations: channel-layer batches in, htmx out-of-band HTML fragments out.

A ``LiveFollower`` belongs to one WebSocket. It picks the invocation to show and keeps its
panel up to date: each arrow as a row of the trace list (the browser draws the sequence
diagram from the rows, one arrow per row, without redrawing the rest), the waterfall's
document, the progress bar, the header and the announced status.

Which invocation it shows:

* **fixed** (``/invocations/<id>``): that one;
* **session** (the Run and plugin pages): the newest one of the browser tab's session;
* **live** (``/live``): the newest one that starts (never an older one whose events arrive
  later), or the one the viewer picked from the list of runs in flight, which it keeps.

A viewer that arrives mid-run gets the arrows so far as a snapshot batch (``invocations.snapshots``)
and merges it by ``seq``; when the final state comes and any arrow is still missing, the stored
trace (complete by then) replaces what was drawn.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from dashboard.traces import invocation_timings, progress_percent, timing_segments, trace_row, trace_rows
from dashboard.waterfall import waterfall
from platform_core.invocations.models import FINAL_STATUSES, Invocation, Status

LIVE_EVENTS_ID = "live-events"
# The runs list keeps every running invocation and this many finished ones.
FINISHED_RUNS_KEPT = 5
# The waterfall's document is sent at most this often while an invocation runs (the browser
# grows its open bars with the clock in between); every arrow still goes at once.
WATERFALL_EVERY_S = 0.25
# Under a stream of invocations (hundreds a second) a live panel cannot show each: the runs list
# is re-rendered at most this often, and the panel moves to a newer run at most this often (the
# runs started in between are in the list, one click away). Measured: re-rendering both for every
# invocation cost a watched gateway ~11 ms of CPU per invocation (bench/hotpath.py).
RUNS_EVERY_S = 0.5
SWITCH_EVERY_S = 0.5
# The batches of a run started within SWITCH_EVERY_S kept until the panel moves to it.
DEFERRED_BATCHES_KEPT = 500
RESULT_CHARS = 300


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
    result: str = ""

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def failed(self) -> bool:
        return self.finished and self.status != Status.SUCCEEDED

    @property
    def segments(self) -> list[dict[str, Any]]:
        return timing_segments(self.timings)


@dataclass
class LiveProgress:
    percent: float | None = None
    message: str = ""
    failed: bool = False


@dataclass
class RunEntry:
    """One line of the Live page's list of runs in flight."""

    invocation_id: str
    plugin: str = ""
    status: str = Status.RUNNING
    started: datetime | None = None
    percent: float | None = None
    http_status: int | None = None
    total_ms: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


def run_entry(invocation: Invocation) -> RunEntry:
    return RunEntry(
        str(invocation.id),
        invocation.plugin_name,
        invocation.status,
        invocation.created_at,
        100.0 if invocation.status == Status.SUCCEEDED else None,
        invocation.http_status,
        invocation.total_ms,
    )


def _result_text(result: Any) -> str:
    if result is None:
        return ""
    text = json.dumps(result, sort_keys=True)
    return text if len(text) <= RESULT_CHARS else text[: RESULT_CHARS - 1] + "…"


def header_html(live: LiveInvocation) -> str:
    return render_to_string("dashboard/partials/live_header.html", {"live": live, "oob": True})


def progress_html(progress: LiveProgress) -> str:
    return render_to_string("dashboard/partials/live_progress.html", {"progress": progress})


def events_html(rows: list[dict[str, Any]], *, append: bool, list_id: str = LIVE_EVENTS_ID) -> str:
    return render_to_string(
        "dashboard/partials/trace_events.html", {"rows": rows, "list_id": list_id, "append": append}
    )


def waterfall_html(document: dict[str, Any], *, list_id: str = LIVE_EVENTS_ID) -> str:
    return render_to_string(
        "dashboard/partials/waterfall_data.html", {"waterfall": document, "waterfall_id": f"{list_id}-waterfall"}
    )


def announce_html(live: LiveInvocation) -> str:
    return render_to_string("dashboard/partials/live_announce.html", {"live": live, "oob": True})


def summary_html(invocation: Invocation) -> str:
    """The invocation page's head and summary, replaced when the invocation it shows ends."""
    return render_to_string(
        "dashboard/partials/invocation_summary.html", {**invocation_summary(invocation), "oob": True}
    )


def invocation_summary(invocation: Invocation) -> dict[str, Any]:
    timings = invocation_timings(invocation)
    return {
        "invocation": invocation,
        "timings": timings,
        "segments": timing_segments(timings),
        "arguments": json.dumps(invocation.arguments, indent=2, sort_keys=True),
        "result": json.dumps(invocation.result, indent=2, sort_keys=True) if invocation.result is not None else "",
    }


def stored_live(invocation: Invocation) -> LiveInvocation:
    return LiveInvocation(
        invocation_id=str(invocation.id),
        plugin=invocation.plugin_name,
        status=invocation.status,
        http_status=invocation.http_status,
        worker_id=invocation.worker_id,
        error={"code": invocation.error_code, "message": invocation.error_message} if invocation.error_code else None,
        timings=invocation_timings(invocation),
        result=_result_text(invocation.result),
    )


def final_progress(live: LiveInvocation, progress: LiveProgress) -> LiveProgress:
    """The progress bar once an invocation has ended: full, or failed where it stopped."""
    if live.status == Status.SUCCEEDED:
        return LiveProgress(100.0, "Completed")
    code = (live.error or {}).get("code", "")
    return LiveProgress(progress.percent, f"Failed{f' ({code})' if code else ''}: {live.status}", failed=True)


class Fragments:
    """Out-of-band fragments in order, by what they replace: a later one of the same key
    supersedes an earlier one (the progress bar twice in a moment is swapped once); appended rows
    accumulate, and go with a list replaced whole (which holds them all)."""

    ROWS, LIST = "rows", "list"

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, key: str, html: str) -> Fragments:
        if html:
            if key != self.ROWS:
                gone = {key, self.ROWS} if key == self.LIST else {key}
                self.items = [item for item in self.items if item[0] not in gone]
            self.items.append((key, html))
        return self

    def extend(self, other: Fragments) -> Fragments:
        for key, html in other.items:
            self.add(key, html)
        return self

    def __str__(self) -> str:
        return "".join(html for _, html in self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


@dataclass
class Update:
    """What a batch changes: fragments to send, and the invocation whose stored record is wanted."""

    fragments: Fragments = field(default_factory=Fragments)
    wants_stored: str = ""

    @property
    def html(self) -> str:
        return str(self.fragments)


class LiveFollower:
    """Which invocation a live panel shows, and the fragments that keep it up to date."""

    def __init__(self, *, session: str = "", invocation_id: str = "", runs: list[RunEntry] | None = None) -> None:
        self.mode = "fixed" if invocation_id else "session" if session else "live"
        self.session = session
        self.fixed = invocation_id
        self.picked = ""  # live mode: the run the viewer chose ("" follows the newest)
        self.runs: dict[str, RunEntry] = {r.invocation_id: r for r in runs or []}
        self._runs_dirty = False
        self.runs_pending = False  # the runs list changed but was sent less than RUNS_EVERY_S ago
        self._runs_sent = 0.0
        self._switched_at = float("-inf")
        # Live mode: the newest run, started too soon after the last move to be shown yet, and its
        # batches so far (shown by ``due`` once the panel may move).
        self._deferred: tuple[str, list[dict[str, Any]]] | None = None
        self._clear(invocation_id)

    # --- the followed invocation ---------------------------------------------------------

    def _clear(self, invocation_id: str) -> None:
        entry = self.runs.get(invocation_id)
        self.live = LiveInvocation(
            invocation_id=invocation_id,
            plugin=entry.plugin if entry else "",
            status=(entry.status if entry else Status.RUNNING) if invocation_id else "",
        )
        self.progress = LiveProgress()
        self.rows: dict[int, dict[str, Any]] = {}
        self.waterfall_pending = False
        self._waterfall_sent = 0.0

    @property
    def following(self) -> str:
        return self.live.invocation_id

    def _missing(self) -> bool:
        return not self.rows or max(self.rows) != len(self.rows)

    def _panel(self) -> Fragments:
        """The whole panel: header, announcement, progress, trace list, waterfall."""
        rows = [self.rows[seq] for seq in sorted(self.rows)]
        return (
            self._status()
            .add("progress", progress_html(self.progress))
            .add(Fragments.LIST, events_html(rows, append=False))
            .add("waterfall", self._waterfall_html())
        )

    def _status(self) -> Fragments:
        return Fragments().add("header", header_html(self.live)).add("announce", announce_html(self.live))

    def _waterfall_html(self) -> str:
        document = waterfall(self.rows.values(), finished=self.live.finished, failed=self.live.failed)
        self.waterfall_pending, self._waterfall_sent = False, time.monotonic()
        return waterfall_html(document)

    def waterfall_due(self) -> Fragments:
        """The waterfall held back by ``WATERFALL_EVERY_S`` (the consumer sends it a moment later)."""
        return Fragments().add("waterfall", self._waterfall_html() if self.waterfall_pending else "")

    @property
    def pending(self) -> bool:
        """Something was held back (the waterfall, the runs list) that ``due`` will send."""
        return self.waterfall_pending or self.runs_pending or self._deferred is not None

    def due(self) -> Fragments:
        """What was held back and may go now (the consumer asks every ``WATERFALL_EVERY_S``)."""
        fragments = Fragments()
        if self._deferred is not None and time.monotonic() - self._switched_at >= SWITCH_EVERY_S:
            _, batches = self._deferred
            self._deferred, self._switched_at = None, float("-inf")
            for batch in batches:  # the first holds its start: the panel moves to it
                fragments.extend(self.on_batch(batch).fragments)
        fragments.extend(self.waterfall_due())
        if self.runs_pending and time.monotonic() - self._runs_sent >= RUNS_EVERY_S:
            fragments.add("runs", self.runs_html())
        return fragments

    def _switch(self, invocation_id: str) -> Fragments:
        self._switched_at = time.monotonic()
        self._clear(invocation_id)
        self._runs_dirty = self.mode == "live"  # the list marks the run followed
        return self._panel()

    def _follow(self, invocation_id: str, context: dict[str, Any], *, starts: bool) -> Fragments | None:
        """Nothing to go on with the current invocation, the fragments that reset the panel to
        it, or None to ignore it."""
        if self.mode == "fixed" or self.picked:
            return Fragments() if invocation_id == (self.fixed or self.picked) else None
        if self.mode == "session" and context.get("session_id") != self.session:
            return None
        if invocation_id == self.following:
            return Fragments()
        if self.following and not starts:
            return None  # an older run (or one whose start we did not see): never jump back to it
        if self.mode == "live" and time.monotonic() - self._switched_at < SWITCH_EVERY_S:
            # Moved to another run a moment ago: this one is shown once the panel may move again
            # (unless a newer one starts meanwhile); it is in the runs list at once.
            self._deferred = (invocation_id, [])
            return None
        return self._switch(invocation_id)

    def start_with(self, invocation_id: str) -> Fragments:
        """Live mode: show ``invocation_id`` (the newest run) without keeping to it."""
        fragments = self._switch(invocation_id).add("runs", self.runs_html())
        self._switched_at = float("-inf")  # what was there when the page opened: the next run is followed at once
        return fragments

    def pick(self, invocation_id: str) -> Fragments:
        """Live mode: follow ``invocation_id`` from now on ("": the newest run again)."""
        self.picked = invocation_id
        self._deferred = None
        fragments = self._switch(invocation_id) if invocation_id and invocation_id != self.following else Fragments()
        self._switched_at = float("-inf")  # the viewer's choice: back to the newest means the next one at once
        return fragments.add("runs", self.runs_html())

    # --- the runs list (live mode) ---------------------------------------------------------

    def _run(self, invocation_id: str) -> RunEntry | None:
        if self.mode != "live":
            return None
        entry = self.runs.get(invocation_id)
        if entry is None:
            entry = self.runs[invocation_id] = RunEntry(invocation_id, started=timezone.now())
            self._runs_dirty = True
        return entry

    def runs_shown(self) -> list[RunEntry]:
        newest = sorted(self.runs.values(), key=lambda r: r.started or timezone.now(), reverse=True)
        finished = [r for r in newest if r.finished][:FINISHED_RUNS_KEPT]
        kept = [r for r in newest if not r.finished or r in finished]
        self.runs = {r.invocation_id: r for r in kept}
        return kept

    def runs_html(self) -> str:
        self._runs_dirty = self.runs_pending = False
        self._runs_sent = time.monotonic()
        if self.mode != "live":
            return ""
        return render_to_string(
            "dashboard/partials/runs_list.html",
            {"runs": self.runs_shown(), "following": self.following, "picked": self.picked, "oob": True},
        )

    # --- batches -------------------------------------------------------------------------

    def on_batch(self, batch: dict[str, Any]) -> Update:
        """One invocation's live items (events and state changes, in order), or a snapshot of
        its events so far (``"snapshot": true``)."""
        invocation_id, context = batch["invocation_id"], batch.get("context") or {}
        snapshot = bool(batch.get("snapshot"))
        update = Update()
        out = update.fragments
        runs_changed = rows_changed = reorder = reset_now = False
        for item in batch["items"]:
            entry = self._run(invocation_id)
            if "event" in item:
                event = item["event"]
                runs_changed |= entry is not None and self._note_event(entry, event)
                reset = self._follow(invocation_id, context, starts=event["seq"] == 1 and not snapshot)
                if reset is None or event["seq"] in self.rows:
                    continue
                out.extend(reset)
                reset_now |= bool(reset)
                reorder |= snapshot or (bool(self.rows) and event["seq"] < max(self.rows))
                row = self.rows[event["seq"]] = trace_row(event)
                rows_changed = True
                if not reorder:
                    out.add(Fragments.ROWS, events_html([row], append=True))
                self._note_hints(row)
                if (percent := progress_percent(event)) is not None and not self.live.finished:
                    self.progress = LiveProgress(percent, str((event.get("data") or {}).get("message", "")))
                    out.add("progress", progress_html(self.progress))
                continue
            state = item["state"]
            runs_changed |= entry is not None and self._note_state(entry, state)
            reset = self._follow(invocation_id, context, starts=False)
            if reset is None:
                continue
            out.extend(reset).extend(self._on_state(state))
            rows_changed = True
            if self.live.finished and (self.mode == "fixed" or self._missing()):
                update.wants_stored = invocation_id
        if self._deferred is not None and self._deferred[0] == invocation_id and not snapshot:
            self._deferred[1].append(batch)  # held until the panel may move (``due``)
            if len(self._deferred[1]) > DEFERRED_BATCHES_KEPT:
                self._deferred = None  # a run this busy is left to the runs list (one click away)
        if reorder:
            out.add(Fragments.LIST, events_html([self.rows[seq] for seq in sorted(self.rows)], append=False))
        if rows_changed:
            if reset_now or self.live.finished or time.monotonic() - self._waterfall_sent >= WATERFALL_EVERY_S:
                out.add("waterfall", self._waterfall_html())
            else:
                self.waterfall_pending = True
        if runs_changed or self._runs_dirty:
            if reset_now or time.monotonic() - self._runs_sent >= RUNS_EVERY_S:
                out.add("runs", self.runs_html())
            else:
                self.runs_pending = True
        return update

    def _note_hints(self, row: dict[str, Any]) -> None:
        hints = row["hints"]
        if "worker" in hints:
            self.live.worker_id = hints["worker"]
        if "plugin" in hints and not self.live.plugin:
            self.live.plugin = hints["plugin"]

    def _on_state(self, state: dict[str, Any]) -> Fragments:
        live = self.live
        live.status = state.get("status", live.status)
        live.plugin = state.get("plugin") or live.plugin
        if "http_status" in state:
            live.http_status = state["http_status"]
        if state.get("timings_ms"):
            live.timings = dict(state["timings_ms"])
        if state.get("error"):
            live.error = state["error"]
        if "result" in state:
            live.result = _result_text(state["result"])
        fragments = Fragments()
        if live.finished:
            self.progress = final_progress(live, self.progress)
            fragments.add("progress", progress_html(self.progress))
        return fragments.extend(self._status())

    @staticmethod
    def _note_event(entry: RunEntry, event: dict[str, Any]) -> bool:
        changed = False
        if not entry.plugin and (plugin := trace_row(event)["hints"].get("plugin")):
            entry.plugin, changed = plugin, True
        if (percent := progress_percent(event)) is not None and percent != entry.percent:
            entry.percent, changed = percent, True
        return changed

    @staticmethod
    def _note_state(entry: RunEntry, state: dict[str, Any]) -> bool:
        before = (entry.status, entry.plugin, entry.http_status, entry.total_ms)
        entry.status = state.get("status", entry.status)
        entry.plugin = state.get("plugin") or entry.plugin
        entry.http_status = state.get("http_status", entry.http_status)
        entry.total_ms = (state.get("timings_ms") or {}).get("total", entry.total_ms)
        if entry.status == Status.SUCCEEDED:
            entry.percent = 100.0
        return before != (entry.status, entry.plugin, entry.http_status, entry.total_ms)

    def on_stored(self, invocation: Invocation) -> Fragments:
        """Replace the panel with the stored invocation (complete: it has finished)."""
        if str(invocation.id) != self.following:
            return Fragments()
        self.live = stored_live(invocation)
        self.rows = {row["seq"]: row for row in trace_rows(invocation.trace)}
        self.progress = final_progress(self.live, self.progress)
        fragments = self._panel()
        if (entry := self.runs.get(str(invocation.id))) is not None:
            self.runs[entry.invocation_id] = run_entry(invocation)
            fragments.add("runs", self.runs_html())
        if self.mode == "fixed":
            fragments.add("summary", summary_html(invocation))
        return fragments

"""Plain parts of the dashboard: schema forms, trace rows, the live follower, the workers board."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from dashboard import live
from dashboard.live import Fragments, LiveFollower
from dashboard.schema_forms import WHOLE_DOCUMENT, arguments_from_post, errors_by_field, form_fields
from dashboard.traces import event_hints, progress_percent, timing_segments, trace_row
from dashboard.workers_relay import SupervisorBoard, board_key, state_counts
from platform_core.registry.builtin import BINARY_INPUT
from platform_core.rpc import sup_pb2

SCHEMA = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "minimum": 1, "default": 5},
        "ratio": {"type": "number"},
        "name": {"type": "string", "description": "Who"},
        "loud": {"type": "boolean", "default": False},
        "mode": {"enum": ["fast", "slow", 3]},
        "tags": {"type": "array", "items": {"type": "string"}, "default": ["a"]},
    },
    "required": ["count", "name"],
}


def test_form_fields_follow_the_schema_with_defaults():
    fields = {f.name: f for f in form_fields(SCHEMA)}
    assert [f.kind for f in fields.values()] == ["integer", "number", "string", "boolean", "enum", "json"]
    assert fields["count"].value == "5" and fields["count"].required and fields["count"].minimum == 1
    assert fields["loud"].value == "false"
    assert fields["mode"].choices == [('"fast"', "fast"), ('"slow"', "slow"), ("3", "3")]
    assert fields["tags"].value.replace("\n", "").replace(" ", "") == '["a"]'
    assert fields["name"].description == "Who"


def test_a_schema_without_properties_is_one_json_field():
    (only,) = form_fields({"type": "array"})
    assert (only.name, only.kind) == (WHOLE_DOCUMENT, "json")
    arguments, problems = arguments_from_post([only], {WHOLE_DOCUMENT: "[1, 2]"})
    assert arguments == [1, 2] and not problems


def test_posted_values_are_typed_and_bad_ones_passed_on_for_the_schema_to_judge():
    fields = form_fields(SCHEMA)
    data = {"count": "3", "ratio": "abc", "name": "", "loud": "true", "mode": '"slow"', "tags": '["x", "y"]'}
    arguments, problems = arguments_from_post(fields, data)
    assert arguments == {"count": 3, "ratio": "abc", "name": "", "loud": True, "mode": "slow", "tags": ["x", "y"]}
    assert not problems
    arguments, problems = arguments_from_post(fields, {"count": "2.0", "ratio": "", "tags": "[oops"})
    assert arguments["count"] == 2 and "ratio" not in arguments
    assert problems["tags"].startswith("not valid JSON")
    assert fields[0].value == "2.0"  # the form shows again what was typed


def test_number_fields_refuse_nan_and_keep_integers_exact():
    (first, _) = form_fields(BINARY_INPUT)
    arguments, _ = arguments_from_post(form_fields(BINARY_INPUT), {"operand1": "nan", "operand2": "10"})
    assert arguments == {"operand1": "nan", "operand2": 10}
    assert first.kind == "number"


def test_api_errors_are_placed_next_to_their_fields():
    details = [
        {"path": "operand2", "message": "'operand2' is a required property"},
        {"path": "operand1", "message": "'x' is not of type 'number'"},
        {"path": "other.deep", "message": "nope"},
    ]
    by_field, general = errors_by_field(details, ["operand1", "operand2"])
    assert by_field == {"operand2": "'operand2' is a required property", "operand1": "'x' is not of type 'number'"}
    assert general == ["other.deep: nope"]


def test_event_hints_name_the_participants():
    assert event_hints("worker_allocated", "worker-20001") == {"worker": "worker-20001"}
    assert event_hints("worker_allocating", "worker-20001 allocating: docker backend, slot 1/32") == {
        "backend": "docker"
    }
    assert event_hints("lookup_result", "PluginSpec(python, plugins.x:plugin, ephemeral)") == {"runtime": "python"}
    assert event_hints("lookup", 'getPlugin("subtract")') == {"plugin": "subtract"}
    assert event_hints("progress", "Progress(50%)") == {}


def test_trace_rows_from_stored_and_live_events_are_the_same():
    live = {
        "seq": 1,
        "source": "client",
        "target": "gateway",
        "kind": "request",
        "phase": 1,
        "detail": "POST",
        "offset_ms": 0.5,
    }
    stored = SimpleNamespace(**live)
    assert trace_row(live) == trace_row(stored)
    assert trace_row(live)["source_label"] == "Client"


def test_progress_percent_is_read_from_structured_data():
    assert progress_percent({"kind": "progress", "data": {"percent": 40.0, "message": "x"}}) == 40.0
    assert progress_percent({"kind": "progress", "data": {"percent": 140}}) == 100.0
    assert progress_percent({"kind": "progress", "detail": "Progress(50%)"}) is None
    assert progress_percent({"kind": "log", "data": {"percent": 1}}) is None


def test_timing_segments_are_shares_of_the_total_with_the_rest_apart():
    segments = timing_segments({"allocation": 50, "init": 5, "execution": 25, "release": 10, "total": 100})
    assert [(s["phase"], s["percent"]) for s in segments] == [
        ("allocation", 50.0),
        ("init", 5.0),
        ("execution", 25.0),
        ("release", 10.0),
        ("other", 10.0),
    ]
    assert timing_segments({"allocation": 1, "total": None}) == []


A = "00000000-0000-4000-8000-00000000000a"
B = "00000000-0000-4000-8000-00000000000b"
C = "00000000-0000-4000-8000-00000000000c"


def _item(seq: int, kind: str = "request", **extra) -> dict:
    event = {"seq": seq, "source": "client", "target": "gateway", "kind": kind, "phase": 1, "detail": ""}
    return {"event": {**event, "offset_ms": float(seq), **extra}}


def _batch(invocation: str, *items: dict, session: str = "s1", tenant: str = "default", snapshot: bool = False) -> dict:
    batch = {"invocation_id": invocation, "context": {"session_id": session, "tenant_id": tenant}, "items": list(items)}
    return {**batch, "snapshot": True} if snapshot else batch


FINAL = {"status": "succeeded", "http_status": 200, "timings_ms": {"total": 5.0}, "result": {"result": 5.0}}


def test_follower_picks_its_sessions_invocations_and_resets_for_a_new_one():
    follower = LiveFollower(session="s1")
    assert follower.on_batch(_batch(A, _item(1), session="other")).html == ""
    first = follower.on_batch(_batch(A, _item(1))).html
    assert 'id="live-events"' in first and 'hx-swap-oob="beforeend"' in first and 'data-seq="1"' in first
    assert 'id="live-header"' in first and 'id="live-announce"' in first  # reset: the panel shows a
    second = follower.on_batch(_batch(A, _item(2))).html
    assert 'id="live-header"' not in second and 'data-seq="2"' in second
    assert 'id="live-header"' in follower.on_batch(_batch(B, _item(1))).html
    assert follower.following == B


def test_follower_never_jumps_back_to_an_older_run():
    follower = LiveFollower(session="s1")
    follower.on_batch(_batch(A, _item(1)))  # a long run starts
    follower.on_batch(_batch(B, _item(1)))  # then a short one: the newest is shown
    follower.on_batch(_batch(B, _item(2), {"state": FINAL}))
    # The older run goes on after the newer one has finished: the panel stays on the newer one.
    assert follower.on_batch(_batch(A, _item(2), {"state": FINAL})).html == ""
    assert follower.following == B and follower.live.status == "succeeded"


def test_follower_moves_the_progress_bar_and_shows_a_failure_where_it_stopped():
    follower = LiveFollower(session="s1")
    follower.on_batch(_batch(A, _item(1)))
    progress = _item(2, kind="progress", data={"percent": 16.6667, "message": "Counted 1 of 6"})
    html = follower.on_batch(_batch(A, progress)).html
    assert 'id="live-progress"' in html and "width: 16.7%" in html and ">17% · Counted 1 of 6<" in html
    failed = {"status": "timeout", "http_status": 504, "error": {"code": "timeout", "message": "ran past 1 s"}}
    update = follower.on_batch(_batch(A, {"state": failed}))
    assert 'data-state="failed"' in update.html and "Failed (timeout): timeout · stopped at 17%" in update.html
    assert 'data-final="true"' in update.html and not update.wants_stored


def test_follower_asks_for_the_stored_trace_when_it_missed_arrows_and_a_page_always():
    late = LiveFollower(session="s1")
    late.on_batch(_batch(C, _item(7)))  # joined after arrows 1-6
    assert late.on_batch(_batch(C, {"state": FINAL})).wants_stored == C
    page = LiveFollower(invocation_id=C)  # an invocation's page wants its record for its summary
    page.on_batch(_batch(C, _item(1)))
    assert page.on_batch(_batch(C, {"state": FINAL})).wants_stored == C


def test_a_snapshot_is_merged_by_seq_and_sent_as_the_whole_list():
    follower = LiveFollower(invocation_id=A)
    follower.on_batch(_batch(A, _item(5), _item(6)))  # live events came first
    update = follower.on_batch(_batch(A, *(_item(seq) for seq in range(1, 7)), snapshot=True))
    assert '<ol id="live-events" class="trace-events">' in update.html  # replaced whole, in order
    assert [int(x) for x in re.findall(r'data-seq="(\d+)"', update.html)] == [1, 2, 3, 4, 5, 6]
    assert sorted(follower.rows) == [1, 2, 3, 4, 5, 6]
    assert follower.on_batch(_batch(A, _item(6))).html == ""  # a duplicate changes nothing


class _Clock:
    """``time.monotonic`` of dashboard.live, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(live.time, "monotonic", clock)
    return clock


def test_live_page_lists_runs_in_flight_and_keeps_to_the_one_picked(clock):
    follower = LiveFollower()
    first = follower.on_batch(_batch(A, _item(1)))
    assert 'id="runs-in-flight"' in first.html and f'data-invocation="{A}"' in first.html
    clock.now += live.SWITCH_EVERY_S
    follower.on_batch(_batch(B, _item(1)))
    assert follower.following == B  # the newest
    picked = str(follower.pick(A))
    assert 'id="live-header"' in picked and 'aria-current="true"' in picked and "Follow the newest" in picked
    assert follower.on_batch(_batch(C, _item(1))).html.count('id="live-header"') == 0  # kept to a
    assert follower.following == A and set(follower.runs) == {A, B, C}
    follower.pick("")  # the newest again: from the next run that starts
    assert follower.on_batch(_batch(B, _item(2))).html.count('id="live-header"') == 0 and follower.following == A
    d = "00000000-0000-4000-8000-00000000000d"
    clock.now += live.SWITCH_EVERY_S
    assert 'id="live-header"' in follower.on_batch(_batch(d, _item(1))).html and follower.following == d


def test_a_stream_of_runs_moves_the_live_panel_and_redraws_the_list_at_most_twice_a_second(clock):
    follower = LiveFollower()
    ids = [f"00000000-0000-4000-8000-{n:012x}" for n in range(1, 201)]
    html = "".join(follower.on_batch(_batch(i, _item(1), {"state": FINAL})).html for i in ids)
    assert html.count('id="live-header"') == 1 and follower.following == ids[0]  # one switch, not 200
    assert html.count('id="runs-in-flight"') == 1 and follower.pending  # the list once, then held back
    clock.now += max(live.RUNS_EVERY_S, live.SWITCH_EVERY_S)
    due = str(follower.due())
    assert 'id="runs-in-flight"' in due and not follower.pending  # the held-back list, up to date
    assert follower.following == ids[-1] and 'data-seq="1"' in due  # then the newest, with its events
    clock.now += live.SWITCH_EVERY_S
    newest = "00000000-0000-4000-8000-ffffffffffff"
    assert 'id="live-header"' in follower.on_batch(_batch(newest, _item(1))).html and follower.following == newest


def test_fragments_keep_the_latest_of_each_and_every_row():
    fragments = Fragments().add("progress", "<p1>").add(Fragments.ROWS, "<r1>").add(Fragments.ROWS, "<r2>")
    fragments.add("progress", "<p2>")
    assert str(fragments) == "<r1><r2><p2>"  # the bar once, at its latest
    fragments.add(Fragments.LIST, "<all>").add(Fragments.ROWS, "<r3>")
    assert str(fragments) == "<p2><all><r3>"  # rows before a list replaced whole are in it
    assert str(Fragments().extend(fragments)) == str(fragments) and not Fragments()


def test_the_waterfall_is_sent_at_most_every_quarter_second_while_running():
    follower = LiveFollower(session="s1")
    assert 'id="live-events-waterfall"' in follower.on_batch(_batch(A, _item(1))).html
    held = follower.on_batch(_batch(A, _item(2))).html
    assert 'id="live-events-waterfall"' not in held and follower.waterfall_pending
    assert 'id="live-events-waterfall"' in str(follower.waterfall_due()) and not follower.waterfall_pending
    assert 'id="live-events-waterfall"' in follower.on_batch(_batch(A, {"state": FINAL})).html  # the end: at once


def test_board_applies_lifecycle_events_and_keeps_removed_workers_apart():
    board = SupervisorBoard("python", "127.0.0.1:9092")
    reply = sup_pb2.ListWorkersResponse(
        supervisor_id="python-9092",
        max_workers=4,
        workers=[sup_pb2.WorkerInfo(worker_id="worker-20001", plugin="p", state=sup_pb2.IDLE, backend="process")],
    )
    board.connected(reply)
    board.apply(worker_id="worker-20002", state="spawning", at_ns=1, detail="", plugin="q", backend="process")
    board.apply(worker_id="worker-20001", state="removed", at_ns=2, detail="exit code 0", plugin="", backend="")
    data = board.as_dict()
    assert data["up"] and data["key"] == board_key("127.0.0.1:9092") == "sup-127-0-0-1-9092"
    assert [(w["worker_id"], w["state"]) for w in data["workers"]] == [("worker-20002", "spawning")]
    assert [(w["worker_id"], w["plugin"]) for w in data["recent"]] == [("worker-20001", "p")]
    assert state_counts([data]) == {"spawning": 1}
    board.down("UNAVAILABLE", retry_in_s=2.0)
    assert board.as_dict()["up"] is False and board.as_dict()["workers"] == []


def test_a_board_names_the_host_its_workers_run_on():
    from django.template.loader import render_to_string

    from dashboard.workers_relay import board_from_listing

    entry = {
        "runtime": "python",
        "address": "127.0.1.2:9092",
        "up": True,
        "supervisor_id": "python-9092",
        "max_workers": 4,
        "host_id": "h-1",
        "host_name": "node-b",
        "workers": [],
    }
    board = board_from_listing(entry)
    assert board["host_name"] == "node-b"
    html = render_to_string("dashboard/partials/supervisor_board.html", {"board": board})
    assert 'data-host="node-b"' in html and "on host <strong>node-b</strong>" in html


def test_the_first_run_after_the_page_opens_or_after_following_the_newest_again_is_followed_at_once(clock):
    follower = LiveFollower()
    follower.start_with(A)  # what the page showed when it opened
    assert 'id="live-header"' in follower.on_batch(_batch(B, _item(1))).html and follower.following == B
    follower.pick(A)
    follower.pick("")
    assert 'id="live-header"' in follower.on_batch(_batch(C, _item(1))).html and follower.following == C


def test_a_run_started_just_after_another_is_shown_a_moment_later_with_everything_it_did(clock):
    follower = LiveFollower()
    follower.on_batch(_batch(A, _item(1)))  # followed at once
    assert follower.on_batch(_batch(B, _item(1))).html.count('id="live-header"') == 0  # too soon after A
    follower.on_batch(_batch(B, _item(2)))
    assert follower.following == A and follower.pending and str(follower.due()).count('id="live-header"') == 0
    clock.now += live.SWITCH_EVERY_S
    shown = str(follower.due())
    assert follower.following == B and 'id="live-header"' in shown
    assert [int(x) for x in re.findall(r'data-seq="(\d+)"', shown)] == [1, 2]  # nothing of it lost


def test_a_board_shows_the_stem_cells_its_supervisor_keeps_and_counts_no_slot_for_them():
    from django.template.loader import render_to_string

    from dashboard.workers_relay import board_from_listing

    entry = {
        "runtime": "java",
        "address": "127.0.0.1:9091",
        "up": True,
        "supervisor_id": "java-9091",
        "max_workers": 32,
        "stem_cells": [{"backend": "process", "memory_mb": 256, "count": 2}],
        "workers": [
            {"worker_id": "worker-10001", "plugin": "", "state": "stem_cell", "backend": "process", "tenant_id": ""},
            {
                "worker_id": "worker-10002",
                "plugin": "add_numbers",
                "state": "executing",
                "backend": "process",
                "tenant_id": "t",
            },
        ],
    }
    board = board_from_listing(entry)
    assert (board["slots_used"], board["stem_cells_ready"]) == (1, 1)
    html = render_to_string("dashboard/partials/supervisor_board.html", {"board": board})
    assert "1 / 32 workers" in html
    assert "stem cells: process 256 MiB \u00d7 2 \u00b7 1 ready" in html
    assert 'data-state="stem_cell"' in html

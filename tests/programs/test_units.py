"""Fast checks of the SSE messages, the ppctl argument parsing and exit codes."""

from __future__ import annotations

import json

import pytest

from platform_core.gateway import sse
from ppctl.cli import EXIT, exit_code, parse_arguments


def _parsed(frame: bytes) -> tuple[str, dict, str | None]:
    lines = frame.decode().strip().split("\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return fields["event"], json.loads(fields["data"]), fields.get("id")


def test_progress_step_from_a_live_event_and_replayed_from_the_record():
    event = {"seq": 12, "offset_ms": 5.5, "kind": "progress", "detail": "Progress(50%, 'Half way')"}
    live = _parsed(sse.step("i", event, {"percent": 50.0, "message": "Half way"}))
    replayed = _parsed(sse.step("i", event))
    assert live == replayed
    name, data, event_id = live
    assert (name, event_id, data["percent"], data["message"]) == ("progress", "12", 50.0, "Half way")


def test_steps_not_worth_showing_are_skipped_and_the_others_named():
    assert sse.step("i", {"seq": 1, "offset_ms": 0, "kind": "lookup", "detail": ""}) is None
    allocated = _parsed(sse.step("i", {"seq": 3, "offset_ms": 1, "kind": "lease_used", "detail": "worker-7: warm"}))
    assert allocated[0] == "allocated" and allocated[1]["worker_id"] == "worker-7"
    log = _parsed(sse.step("i", {"seq": 4, "offset_ms": 1, "kind": "log", "detail": "Log: hello"}))
    assert log[0] == "log" and log[1]["message"] == "hello"


def test_the_outcome_is_result_or_error_with_the_status():
    assert _parsed(sse.outcome_frame(200, {"result": 1}))[:2] == ("result", {"result": 1})
    name, data, _ = _parsed(sse.outcome_frame(502, {"error": {"code": "x"}}))
    assert name == "error" and data["http_status"] == 502
    assert sse.wants_stream("application/json, Text/Event-Stream") and not sse.wants_stream("application/json")


def test_ppctl_arguments_are_json_when_they_parse():
    assert parse_arguments(["steps=3", "name=x", "ok=true", "list=[1,2]", "empty="]) == {
        "steps": 3,
        "name": "x",
        "ok": True,
        "list": [1, 2],
        "empty": "",
    }
    with pytest.raises(ValueError):
        parse_arguments(["novalue"])


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (200, None, "ok"),
        (202, None, "ok"),
        (400, "invalid_input", "refused"),
        (404, "unknown_plugin", "refused"),
        (409, "invocation_finished", "refused"),
        (409, "cancelled", "cancelled"),
        (401, "unauthenticated", "unauthenticated"),
        (429, "rate_limited", "retry"),
        (503, "no_capacity", "retry"),
        (504, "timeout", "retry"),
        (502, "division_by_zero", "failed"),
    ],
)
def test_ppctl_exit_codes(status, code, expected):
    body = {"error": {"code": code}} if code else {}
    assert exit_code(status, body) == EXIT[expected]


async def test_a_cancelled_invocations_worker_is_released_or_force_stopped_after_the_grace():
    import asyncio

    from platform_core.gateway.cancellation import worker_release

    calls: list[tuple[str, dict]] = []

    async def prompt(reason: str, **how: bool) -> str:
        calls.append((reason, how))
        return "released"

    assert await worker_release(prompt, grace_s=1.0) == "released"
    assert calls == [("cancelled", {"retire": True})]

    calls.clear()

    async def stuck(reason: str, **how: bool) -> str:
        calls.append((reason, how))
        if how.get("retire"):
            await asyncio.sleep(30)  # the worker does not stop
        return "force-stopped"

    assert await worker_release(stuck, grace_s=0.1) == "force-stopped"
    assert [how for _, how in calls] == [{"retire": True}, {"force": True}]

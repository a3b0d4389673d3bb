"""End to end over HTTP: a real gateway (daphne), a real supervisor, real worker processes."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.support.platform import running_worker

pytestmark = pytest.mark.e2e


def _invocation(api, invocation_id: str) -> dict:
    response = api.get(f"/api/v1/invocations/{invocation_id}")
    assert response.status_code == 200
    return response.json()


def _kinds(invocation: dict) -> list[str]:
    return [event["kind"] for event in invocation["trace"]]


def test_subtract_returns_the_seed_response_and_records_the_trace(api):
    response = api.post("/api/v1/calculate/subtract", json={"operand1": 10, "operand2": 5})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == 5.0
    assert (body["operation"], body["operand1"], body["operand2"]) == ("subtract", 10.0, 5.0)
    assert body["worker_id"].startswith("worker-2")
    assert set(body["timings_ms"]) == {"allocation", "init", "execution", "release", "total"}
    assert all(value > 0 for value in body["timings_ms"].values())

    stored = _invocation(api, body["invocation_id"])
    assert stored["status"] == "succeeded" and stored["http_status"] == 200
    assert stored["result"]["result"] == 5.0
    kinds = _kinds(stored)
    # The seed's sequence, in order: request, lookup, allocation with the worker lifecycle,
    # Init, Invoke with progress, Completed, release down to Removed, response.
    expected_order = [
        "request",
        "lookup",
        "lookup_result",
        "allocate_request",
        "worker_spawning",
        "worker_ready",
        "worker_allocated",
        "init_request",
        "init_response",
        "invoke_request",
        "progress",
        "completed",
        "validate_output",
        "release_request",
        "worker_stopping",
        "worker_removed",
        "released",
        "response",
    ]
    positions = [kinds.index(kind) for kind in expected_order]
    assert positions == sorted(positions), kinds
    offsets = [event["offset_ms"] for event in stored["trace"]]
    assert offsets == sorted(offsets)
    assert stored["timings_ms"] == body["timings_ms"]
    assert "Subtracting" in stored["worker_log"]
    # The worker is on the gateway's host: its socket, not a relay (docs/DEPLOYMENT.md, "Several hosts").
    [channel_open] = [event["detail"] for event in stored["trace"] if event["kind"] == "channel_open"]
    assert channel_open.startswith("Create channel: direct unix socket unix://"), channel_open


def test_divide(api):
    response = api.post("/api/v1/calculate/divide", json={"operand1": 10, "operand2": 4})
    assert response.status_code == 200
    assert response.json()["result"] == 2.5


def test_divide_by_zero_is_a_502_with_the_plugins_message(api):
    response = api.post("/api/v1/calculate/divide", json={"operand1": 10, "operand2": 0})

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "division_by_zero"
    assert "divide 10.0 by zero" in error["message"]
    stored = _invocation(api, response.json()["invocation_id"])
    assert stored["status"] == "failed"
    assert "released" in _kinds(stored), "the worker is released after a plugin failure"


def test_generic_invoke_runs_any_plugin(api):
    response = api.post("/api/v1/plugins/slow_count/invoke", json={"steps": 3, "delay_ms": 10})

    assert response.status_code == 200, response.text
    assert response.json()["result"]["counted"] == 3
    stored = _invocation(api, response.json()["invocation_id"])
    assert _kinds(stored).count("progress") == 3


def test_unknown_operation_is_404_and_recorded(api):
    response = api.post("/api/v1/calculate/power", json={"operand1": 2, "operand2": 8})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_plugin"
    assert _invocation(api, response.json()["invocation_id"])["status"] == "rejected"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b'{"operand1": "ten", "operand2": 5}', "'ten' is not of type 'number'"),
        (b'{"operand1": 10}', "'operand2' is a required property"),
        (b"[1, 2]", "is not of type 'object'"),
    ],
)
def test_bad_input_is_400_and_no_worker_is_started(api, body, fragment):
    response = api.post("/api/v1/calculate/subtract", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 400
    payload = response.json()
    assert payload["error"]["code"] == "invalid_input"
    assert fragment in payload["error"]["message"] + str(payload["error"].get("details"))
    assert payload["worker_id"] is None
    stored = _invocation(api, payload["invocation_id"])
    assert stored["status"] == "rejected"
    assert "allocate_request" not in _kinds(stored)


def test_java_plugin_without_java_supervisor_is_503_naming_it(api):
    response = api.post("/api/v1/calculate/add", json={"operand1": 10, "operand2": 5})

    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    error = response.json()["error"]
    assert error["code"] == "supervisor_unavailable"
    assert "java runtime supervisor" in error["message"]
    assert _invocation(api, response.json()["invocation_id"])["status"] == "unavailable"


def test_worker_killed_mid_invocation_is_502_recorded_and_gone(platform, api):
    result: dict = {}

    def call() -> None:
        with platform.client() as client:
            result["response"] = client.post("/api/v1/plugins/slow_count/invoke", json={"steps": 50, "delay_ms": 100})

    caller = threading.Thread(target=call)
    caller.start()
    worker = running_worker(api, "slow_count")
    os.kill(worker["pid"], signal.SIGKILL)
    caller.join(timeout=30)

    response = result["response"]
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "worker_lost"
    stored = _invocation(api, response.json()["invocation_id"])
    assert stored["status"] == "failed"
    assert stored["worker_id"] == worker["worker_id"]
    assert worker["worker_id"] not in str(api.get("/api/v1/workers").json())
    with pytest.raises(ProcessLookupError):
        os.kill(worker["pid"], 0)


def test_timeout_is_504_and_the_worker_is_cancelled(api):
    started = time.monotonic()
    response = api.post("/api/v1/plugins/slow_count_short/invoke", json={"steps": 100, "delay_ms": 100})

    assert response.status_code == 504
    assert time.monotonic() - started < 8
    assert response.json()["error"]["code"] == "timeout"
    stored = _invocation(api, response.json()["invocation_id"])
    assert stored["status"] == "timeout"
    kinds = _kinds(stored)
    assert "cancel_request" in kinds and "worker_removed" in kinds
    assert stored["worker_id"] not in str(api.get("/api/v1/workers").json())


def test_history_is_filterable_and_paginated(api):
    for _ in range(3):
        api.post("/api/v1/calculate/subtract", json={"operand1": 1, "operand2": 1})
    page = api.get(
        "/api/v1/invocations", params={"plugin": "subtract_numbers", "status": "succeeded", "page_size": 2}
    ).json()
    assert page["count"] >= 3 and len(page["results"]) == 2 and page["pages"] >= 2
    assert all(i["plugin"] == "subtract_numbers" and i["status"] == "succeeded" for i in page["results"])
    assert api.get("/api/v1/invocations", params={"status": "bogus"}).status_code == 400
    assert api.get("/api/v1/invocations", params={"page_size": "0"}).status_code == 400


def test_concurrent_invocations_each_get_their_own_worker(platform):
    responses = []

    def call(i: int) -> None:
        with platform.client() as client:
            responses.append(client.post("/api/v1/calculate/subtract", json={"operand1": i, "operand2": 1}))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r.json()["result"] for r in responses) == [float(i - 1) for i in range(6)]
    assert len({r.json()["worker_id"] for r in responses}) == 6


def test_health_workers_and_openapi(api):
    health = api.get("/api/v1/health").json()
    assert health["status"] == "ok"
    assert {s["runtime"]: s["up"] for s in health["supervisors"]} == {"python": True, "node": True, "java": False}
    document = api.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert "/api/v1/calculate/{operation}" in document["paths"]


def test_api_errors_are_json_never_html(api):
    assert api.get("/api/v1/nowhere").json()["error"]["code"] == "not_found"
    response = api.get("/api/v1/calculate/subtract")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"

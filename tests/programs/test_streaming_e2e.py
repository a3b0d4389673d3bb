"""SSE on the invoking routes and on an invocation's events, parsed by a real HTTP client."""

from __future__ import annotations

import pytest

from tests.programs.sse_client import messages

pytestmark = pytest.mark.e2e

SSE = {"Accept": "text/event-stream"}


def test_invoke_streams_progress_then_the_result(papi):
    with papi.stream(
        "POST", "/api/v1/plugins/slow_count/invoke", json={"steps": 3, "delay_ms": 50}, headers=SSE
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = list(messages(response))
    names = [m.event for m in received]
    assert names[0] == "accepted"
    invocation_id = received[0].data["invocation_id"]
    assert names.index("allocated") < names.index("started") < names.index("progress") < names.index("result")
    progress = [m.data for m in received if m.event == "progress"]
    assert [p["percent"] for p in progress] == pytest.approx([100 / 3, 200 / 3, 100.0])
    assert progress[-1]["message"] == "Counted 3 of 3"
    assert names[-1] == "result"
    final = received[-1].data
    assert final["invocation_id"] == invocation_id and final["result"]["counted"] == 3
    # The same body as the JSON answer: and the invocation is recorded like any other.
    stored = papi.get(f"/api/v1/invocations/{invocation_id}").json()
    assert stored["status"] == "succeeded" and stored["result"] == final["result"]
    assert final["timings_ms"] == stored["timings_ms"]


def test_calculate_streams_and_an_error_ends_with_the_error_body(papi):
    with papi.stream("POST", "/api/v1/calculate/divide", json={"operand1": 1, "operand2": 0}, headers=SSE) as response:
        received = list(messages(response))
    assert received[-1].event == "error"
    assert received[-1].data["http_status"] == 502
    assert received[-1].data["error"]["code"] == "division_by_zero"
    with papi.stream(
        "POST", "/api/v1/calculate/subtract", json={"operand1": 7, "operand2": 2}, headers=SSE
    ) as response:
        received = list(messages(response))
    assert received[-1].event == "result" and received[-1].data["result"] == 5.0
    assert received[-1].data["operation"] == "subtract"


def test_invalid_input_streams_an_error_and_401_stays_json(papi, programs_platform):
    with papi.stream("POST", "/api/v1/plugins/slow_count/invoke", json={"steps": 0}, headers=SSE) as response:
        received = list(messages(response))
    assert [m.event for m in received] == ["accepted", "error"]
    assert received[-1].data["http_status"] == 400 and received[-1].data["error"]["code"] == "invalid_input"
    with programs_platform.client(api_key="pp_wrong") as anonymous:
        response = anonymous.post("/api/v1/plugins/slow_count/invoke", json={}, headers=SSE)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


def test_a_client_that_disconnects_does_not_cancel_the_invocation(papi):
    with papi.stream(
        "POST", "/api/v1/plugins/slow_count/invoke", json={"steps": 3, "delay_ms": 200}, headers=SSE
    ) as response:
        first = next(messages(response))
    invocation_id = first.data["invocation_id"]
    # Followed from its start on another connection: replayed, then live, then the outcome.
    with papi.stream("GET", f"/api/v1/invocations/{invocation_id}/events") as response:
        assert response.status_code == 200
        received = list(messages(response))
    assert [m.data["percent"] for m in received if m.event == "progress"][-1] == 100.0
    assert received[-1].event == "result" and received[-1].data["result"]["counted"] == 3
    # Replayed from the record once it has finished.
    with papi.stream("GET", f"/api/v1/invocations/{invocation_id}/events") as response:
        again = list(messages(response))
    assert [m.event for m in again] == [m.event for m in received]
    assert again[-1].data == received[-1].data


def test_openapi_describes_the_programs_endpoints(papi):
    document = papi.get("/api/v1/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/api/v1/plugins/{name}/invocations",
        "/api/v1/invocations/{id}/events",
        "/api/v1/invocations/{id}/cancel",
    ):
        assert path in paths, path
    # MCP is JSON-RPC under its own specification: named, not described as REST paths.
    assert document["x-mcp"]["url"] == "/mcp" and "/mcp" in document["info"]["description"]
    assert "202" in paths["/api/v1/plugins/{name}/invocations"]["post"]["responses"]
    assert "text/event-stream" in paths["/api/v1/plugins/{name}/invoke"]["post"]["responses"]["200"]["content"]
    headers = [p["name"] for p in paths["/api/v1/calculate/{operation}"]["post"]["parameters"]]
    assert "Idempotency-Key" in headers and "Accept" in headers
    assert "409" in paths["/api/v1/invocations/{id}/cancel"]["post"]["responses"]
    assert "cancelled" in document["paths"]["/api/v1/invocations"]["get"]["parameters"][1]["schema"]["enum"]


def test_a_client_that_asks_cancels_the_invocation_when_it_disconnects(papi):
    with papi.stream(
        "POST",
        "/api/v1/plugins/slow_count/invoke?cancel_on_disconnect=1",
        json={"steps": 100, "delay_ms": 100},
        headers=SSE,
    ) as response:
        received = messages(response)
        invocation_id = next(received).data["invocation_id"]
        for message in received:
            if message.event == "progress":
                break
    from tests.support.platform import wait_for

    def status() -> str:
        return papi.get(f"/api/v1/invocations/{invocation_id}").json()["status"]

    wait_for(lambda: status() == "cancelled", what="cancelled on disconnect", timeout_s=20)

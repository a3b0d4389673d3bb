"""OpenTelemetry end to end: a real platform exports to a real OTLP/gRPC receiver on loopback.

After one subtract over HTTP, the gateway's spans (root and phases) and the supervisor's arrive
with their parent links and attributes; a caller's ``traceparent`` makes them part of its trace;
the worker is given the span of its Invoke (and a plugin sees it through the SDK).
"""

from __future__ import annotations

import pytest

from tests.support.otlp import GrpcReceiver, ReceivedSpan
from tests.support.platform import Platform

pytestmark = pytest.mark.e2e

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
GATEWAY = "plugin-platform-gateway"
SUPERVISOR = "plugin-platform-supervisor-python"
ERROR = 2


@pytest.fixture(scope="module")
def receiver():
    running = GrpcReceiver()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def traced(receiver):
    platform = Platform(
        runtimes=("python",),
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            # Export within 50 ms of a span's end (the default waits 5 s).
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        },
    ).start()
    platform.add_plugin_variant(
        "subtract_numbers",
        "context_echo",
        primitive="context_echo",
        entrypoint="plugins.context_echo:plugin",
        input_schema={"type": "object"},
        output_schema={"type": "object"},
    )
    yield platform
    platform.stop()


def _one(spans: list[ReceivedSpan], name: str, service: str = GATEWAY) -> ReceivedSpan:
    found = [span for span in spans if span.name == name and span.service == service]
    assert len(found) == 1, f"{len(found)} spans {name!r} of {service}: {[(s.service, s.name) for s in spans]}"
    return found[0]


def _trace_complete(trace_id: str, *names: tuple[str, str]):
    def complete(spans: list[ReceivedSpan]) -> bool:
        have = {(span.service, span.name) for span in spans if span.trace_id == trace_id}
        return all(name in have for name in names)

    return complete


def test_a_subtract_becomes_a_trace_that_continues_the_callers(traced, receiver):
    headers = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "tracestate": "vendor=abc"}
    with traced.client(headers=headers) as api:
        answer = api.post("/api/v1/calculate/subtract", json={"operand1": 10, "operand2": 5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    receiver.wait_for(
        _trace_complete(
            CALLER_TRACE,
            (GATEWAY, "invoke subtract_numbers"),
            (GATEWAY, "release"),
            (SUPERVISOR, "supervisor AllocateWorker"),
            (SUPERVISOR, "supervisor ReleaseWorker"),
        )
    )
    spans = receiver.of_trace(CALLER_TRACE)

    root = _one(spans, "invoke subtract_numbers")
    assert root.parent_span_id == CALLER_SPAN  # a child of the caller's span
    assert root.kind == 2  # SERVER
    assert root.attributes["invocation.id"] == body["invocation_id"]
    assert root.attributes["plugin.name"] == "subtract_numbers"
    assert root.attributes["plugin.mode"] == "ephemeral"
    assert root.attributes["tenant.id"] == "e2e"
    assert root.attributes["worker.id"] == body["worker_id"]
    assert root.attributes["supervisor.address"] == f"127.0.0.1:{traced.supervisor_ports['python']}"
    assert root.attributes["worker.host"]
    assert root.attributes["http.response.status_code"] == 200
    assert root.status_code != ERROR

    phases = {name: _one(spans, name) for name in ("lookup", "validate_input", "allocation", "init", "invoke")}
    phases |= {name: _one(spans, name) for name in ("validate_output", "release")}
    for name, span in phases.items():
        assert span.parent_span_id == root.span_id, name
        assert root.start_ns <= span.start_ns <= span.end_ns <= root.end_ns + 1_000_000, name
    # The phases in the seed's order.
    order = ["lookup", "validate_input", "allocation", "init", "invoke", "validate_output", "release"]
    assert sorted(order, key=lambda name: phases[name].start_ns) == order
    # The worker's spawn and readiness, reported by its supervisor, inside the allocation.
    for name in ("spawn", "readiness"):
        assert _one(spans, name).parent_span_id == phases["allocation"].span_id
    assert _one(spans, "stop").parent_span_id == phases["release"].span_id
    # Progress and the worker's log line as events of the Invoke span.
    invoke_events = [name for name, _ in phases["invoke"].events]
    assert "progress" in invoke_events and "log" in invoke_events
    progress = dict(phases["invoke"].events)["progress"]
    assert progress["percent"] == 50.0

    # The supervisor's spans join the trace under the gateway's allocation and release spans.
    allocate = _one(spans, "supervisor AllocateWorker", SUPERVISOR)
    assert allocate.parent_span_id == phases["allocation"].span_id
    assert allocate.attributes["worker.id"] == body["worker_id"]
    assert {name for name, _ in allocate.events} >= {"worker_requested"}
    assert {span.name for span in spans if span.service == SUPERVISOR and span.parent_span_id == allocate.span_id} >= {
        "spawn",
        "readiness",
    }
    release = _one(spans, "supervisor ReleaseWorker", SUPERVISOR)
    assert release.parent_span_id == phases["release"].span_id


def test_the_worker_is_given_its_invoke_span(traced, receiver):
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    headers = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01", "tracestate": "vendor=xyz"}
    with traced.client(headers=headers) as api:
        answer = api.post("/api/v1/plugins/context_echo/invoke", json={})
    assert answer.status_code == 200, answer.text
    seen = answer.json()["result"]
    version, seen_trace, seen_span, flags = seen["traceparent"].split("-")
    assert (version, seen_trace, flags) == ("00", trace_id, "01")
    assert seen["tracestate"] == "vendor=xyz"
    spans = receiver.wait_for(_trace_complete(trace_id, (GATEWAY, "invoke context_echo"), (GATEWAY, "invoke")))
    invoke = _one([s for s in spans if s.trace_id == trace_id], "invoke")
    assert seen_span == invoke.span_id  # a plugin's own spans become children of our Invoke span


def test_without_traceparent_a_new_trace_starts(traced, receiver):
    with traced.client() as api:
        answer = api.post("/api/v1/calculate/subtract", json={"operand1": 1, "operand2": 2})
    invocation_id = answer.json()["invocation_id"]
    spans = receiver.wait_for(lambda spans: any(s.attributes.get("invocation.id") == invocation_id for s in spans))
    root = next(s for s in spans if s.attributes.get("invocation.id") == invocation_id)
    assert root.parent_span_id == ""
    assert root.trace_id not in {CALLER_TRACE, "0" * 32}


def test_a_failure_is_an_error_span(traced, receiver):
    trace_id = "11111111111111111111111111111111"
    with traced.client(headers={"traceparent": f"00-{trace_id}-2222222222222222-01"}) as api:
        answer = api.post("/api/v1/calculate/divide", json={"operand1": 1, "operand2": 0})
    assert answer.status_code == 502
    spans = receiver.wait_for(_trace_complete(trace_id, (GATEWAY, "invoke divide_numbers"), (GATEWAY, "release")))
    spans = [s for s in spans if s.trace_id == trace_id]
    root, invoke = _one(spans, "invoke divide_numbers"), _one(spans, "invoke")
    assert root.status_code == ERROR and "division_by_zero" in root.status_message
    assert root.attributes["error.type"] == "division_by_zero"
    assert invoke.status_code == ERROR and "division_by_zero" in invoke.status_message


def test_a_caller_that_does_not_sample_gets_no_spans_but_its_decision_travels(traced, receiver):
    trace_id = "33333333333333333333333333333333"
    with traced.client(headers={"traceparent": f"00-{trace_id}-4444444444444444-00"}) as api:
        answer = api.post("/api/v1/plugins/context_echo/invoke", json={})
    seen = answer.json()["result"]["traceparent"]
    assert seen.startswith(f"00-{trace_id}-") and seen.endswith("-00")
    # A later sampled invocation's spans arrive; the unsampled one's never do.
    with traced.client(headers={"traceparent": f"00-{'5' * 32}-4444444444444444-01"}) as api:
        api.post("/api/v1/calculate/subtract", json={"operand1": 1, "operand2": 2})
    receiver.wait_for(_trace_complete("5" * 32, (GATEWAY, "invoke subtract_numbers")))
    assert receiver.of_trace(trace_id) == []

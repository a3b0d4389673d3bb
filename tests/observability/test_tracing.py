"""Traces from recorded invocations: W3C parsing, spans from trace events, export over OTLP/HTTP."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from platform_core.invocations.trace import Trace
from platform_core.invocations.vocabulary import EventKind as K
from platform_core.observability import tracing
from tests.support.otlp import HttpReceiver

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def exported():
    """Tracing on, exporting to memory (the real SDK pipeline without a network)."""
    memory = InMemorySpanExporter()
    tracing.tracing_setup(role="gateway", processor=SimpleSpanProcessor(memory))
    yield memory
    tracing.tracing_setup(role="gateway")


@pytest.mark.parametrize(
    "header",
    [
        "",
        "junk",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has no more fields
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  # not hex
    ],
)
def test_invalid_traceparents_start_a_new_trace(header):
    assert tracing.traceparent_parse(header) is None


def test_traceparent_is_parsed_case_insensitively_and_future_versions_are_read():
    remote = tracing.traceparent_parse(" 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01 ")
    assert remote == tracing.Remote(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 1)
    assert tracing.traceparent_parse(CALLER.replace("00-", "01-", 1) + "-more").sampled


def test_without_an_exporter_a_callers_traceparent_passes_through_unchanged():
    tracing.tracing_setup(role="gateway")  # no OTEL_* variables in the test environment
    assert tracing.propagation_begin("", "") is None
    propagation = tracing.propagation_begin(CALLER, "vendor=1")
    assert propagation is not None and not propagation.exported
    trace = Trace("x", publish=False)
    trace.propagation = propagation
    assert trace.traceparent(trace.add(K.INVOKE_REQUEST)) == CALLER
    assert trace.tracestate == "vendor=1"
    assert propagation.trace_id_hex == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_nothing_of_the_sdk_is_imported_when_tracing_is_off():
    code = (
        "import os, sys, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'platform_core.settings'; django.setup();"
        "import platform_core.asgi, platform_core.gateway.execution;"
        "from platform_core.observability import tracing;"
        "tracing.propagation_begin('" + CALLER + "', '');"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _invocation_trace() -> Trace:
    """The events of a cold ephemeral invocation, in the order the gateway records them."""
    trace = Trace("inv-1", publish=False)
    for kind, detail in [
        (K.REQUEST, 'POST /api/v1/calculate/subtract {"operand1": 10, "operand2": 5}'),
        (K.LOOKUP, ""),
        (K.LOOKUP_RESULT, ""),
        (K.VALIDATE_INPUT, "Build PluginRef & Context"),
        (K.ALLOCATE_REQUEST, ""),
        (K.ALLOCATE_RPC, ""),
        (K.WORKER_REQUESTED, ""),
        (K.WORKER_SPAWNING, ""),
        (K.WORKER_STARTING, ""),
        (K.WORKER_READY, ""),
        (K.ALLOCATE_RESPONSE, ""),
        (K.WORKER_ALLOCATED, "worker-1"),
        (K.CHANNEL_OPEN, ""),
        (K.INIT_REQUEST, ""),
        (K.INIT_RESPONSE, ""),
        (K.INVOKE_REQUEST, ""),
        (K.LOG, "Subtracting"),
        (K.PROGRESS, "Progress(50%)"),
        (K.COMPLETED, ""),
        (K.VALIDATE_OUTPUT, "Parse JSON output, validate output schema"),
        (K.CHANNEL_CLOSE, ""),
        (K.RELEASE_REQUEST, ""),
        (K.RELEASE_RPC, ""),
        (K.WORKER_STOPPING, ""),
        (K.WORKER_REMOVED, ""),
        (K.RELEASE_RESPONSE, ""),
        (K.RELEASED, ""),
        (K.RESPONSE, "HTTP 200"),
    ]:
        trace.add(kind, detail, data={"percent": 50.0} if kind == K.PROGRESS else None)
    return trace


def test_phase_spans_nest_as_the_seed_draws_them():
    spans, loose = tracing.phase_spans(_invocation_trace().events)
    by_name = {span.phase.name: span for span in spans}
    assert list(by_name) == [
        "lookup",
        "validate_input",
        "allocation",
        "spawn",
        "readiness",
        "init",
        "invoke",
        "validate_output",
        "release",
        "stop",
    ]
    assert by_name["spawn"].parent is by_name["allocation"] and by_name["readiness"].parent is by_name["allocation"]
    assert by_name["stop"].parent is by_name["release"]
    assert all(by_name[name].parent is None for name in ("lookup", "init", "invoke", "release"))
    assert [event.kind for event in by_name["invoke"].events] == ["log", "progress"]
    assert {event.kind for event in loose} == {"request", "response", "channel_open", "channel_close"}
    assert not any(span.error for span in spans)


def test_a_warm_seat_given_back_is_an_instant_release_and_failures_are_errors():
    trace = Trace("inv-2", publish=False)
    for kind, detail in [
        (K.REQUEST, ""),
        (K.ALLOCATE_REQUEST, ""),
        (K.LEASE_USED, ""),
        (K.INIT_CACHED, ""),
        (K.INVOKE_REQUEST, ""),
        (K.FAILED, "Failed(division_by_zero)"),
        (K.LEASE_RETURNED, ""),
        (K.RESPONSE, "HTTP 502"),
    ]:
        trace.add(kind, detail)
    spans, _ = tracing.phase_spans(trace.events)
    by_name = {span.phase.name: span for span in spans}
    assert set(by_name) == {"allocation", "invoke", "release"}
    assert by_name["release"].start_ms == by_name["release"].end_ms
    assert by_name["invoke"].error == "Failed(division_by_zero)"
    invalid = Trace("inv-3", publish=False)
    invalid.add(K.LOOKUP_RESULT)
    invalid.add(K.VALIDATE_INPUT, "invalid: 'operand1' is a required property")
    (span,), _ = tracing.phase_spans(invalid.events)
    assert span.phase.name == "validate_input" and span.error.startswith("invalid")


def test_spans_are_exported_with_the_ids_the_worker_was_given(exported):
    trace = _invocation_trace()
    propagation = trace.propagation = tracing.propagation_begin(CALLER, "vendor=1")
    assert propagation.exported and propagation.sampled
    invoke_event = next(e for e in trace.events if e.kind == K.INVOKE_REQUEST)
    given = trace.traceparent(invoke_event)  # what the worker's Context carried
    tracing.spans_submit(
        tracing.SpanJob(
            propagation, "invoke subtract_numbers", True, trace.started_ns, trace.events, {"plugin.name": "s"}
        )
    )
    assert tracing.spans_flush()
    spans = {span.name: span for span in exported.get_finished_spans()}
    root, invoke = spans["invoke subtract_numbers"], spans["invoke"]
    assert f"{root.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert root.parent.span_id == 0x00F067AA0BA902B7 and root.parent.is_remote
    assert given == f"00-{root.context.trace_id:032x}-{invoke.context.span_id:016x}-01"
    assert invoke.parent.span_id == root.context.span_id
    assert spans["spawn"].parent.span_id == spans["allocation"].context.span_id
    assert root.attributes["plugin.name"] == "s"
    assert [event.name for event in invoke.events] == ["log", "progress"]
    assert invoke.events[1].attributes["percent"] == 50.0
    assert root.start_time <= invoke.start_time <= invoke.end_time <= root.end_time
    assert str(root.context.trace_state) and root.context.trace_state.get("vendor") == "1"
    # The request line's body (the arguments) does not leave: method and path only.
    assert [event.attributes["detail"] for event in root.events if event.name == "request"] == [
        "POST /api/v1/calculate/subtract"
    ]


def test_a_caller_that_does_not_sample_is_followed(exported):
    propagation = tracing.propagation_begin(CALLER[:-2] + "00", "")
    assert propagation.exported and not propagation.sampled
    trace = _invocation_trace()
    trace.propagation = propagation
    assert trace.traceparent(trace.events[0]).endswith("-00")
    tracing.spans_submit(tracing.SpanJob(propagation, "invoke", True, trace.started_ns, trace.events, {}))
    assert tracing.spans_flush()
    assert exported.get_finished_spans() == ()


def test_otlp_over_http_with_the_standard_variables(monkeypatch):
    receiver = HttpReceiver()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
        tracing.tracing_setup(role="gateway")
        trace = _invocation_trace()
        trace.propagation = tracing.propagation_begin("", "")
        assert trace.propagation.exported and trace.propagation.parent_span_id == 0
        tracing.spans_submit(tracing.SpanJob(trace.propagation, "invoke", True, trace.started_ns, trace.events, {}))
        assert tracing.spans_flush()
        spans = receiver.wait_for(lambda spans: len(spans) == 11)
        assert {span.service for span in spans} == {"gateway-under-test"}
        assert {span.trace_id for span in spans} == {trace.propagation.trace_id_hex}
    finally:
        tracing.tracing_setup(role="gateway")
        receiver.stop()


def test_an_unknown_protocol_is_refused_loudly(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    tracing.tracing_setup(role="gateway")
    try:
        with pytest.raises(ImproperlyConfigured, match="grpc or http/protobuf"):
            tracing.propagation_begin("", "")
    finally:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        tracing.tracing_setup(role="gateway")

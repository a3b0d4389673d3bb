"""Pure parts of the gateway: timings from events, schema errors, supervisor error mapping."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest

from platform_core.gateway import errors
from platform_core.gateway.runtime_client import allocation_error
from platform_core.invocations.timings import phase_timings
from platform_core.registry.builtin import BINARY_INPUT
from platform_core.registry.schemas import schema_errors


@dataclass
class E:
    kind: str
    offset_ms: float


def test_phase_timings_are_derived_from_events():
    events = [
        E("request", 0),
        E("lookup", 1),
        E("allocate_request", 2),
        E("worker_allocated", 102),
        E("init_request", 103),
        E("init_response", 105),
        E("invoke_request", 106),
        E("progress", 110),
        E("completed", 116),
        E("release_request", 117),
        E("released", 147),
        E("response", 150),
    ]
    assert phase_timings(events) == {"allocation": 100, "init": 2, "execution": 10, "release": 30, "total": 150}


def test_phases_never_reached_are_none():
    timings = phase_timings([E("request", 0), E("allocate_request", 1), E("allocation_failed", 5), E("response", 6)])
    assert timings == {"allocation": 4, "init": None, "execution": None, "release": None, "total": 6}


def test_a_cancelled_invocation_counts_cancel_as_release():
    events = [E("invoke_request", 0), E("timeout", 1000), E("cancel_request", 1001), E("cancelled", 1011)]
    assert phase_timings(events)["release"] == 10
    assert phase_timings(events)["execution"] == 1000


def test_schema_errors_name_the_field():
    assert schema_errors(BINARY_INPUT, {"operand1": 1, "operand2": 2}) == []
    problems = schema_errors(BINARY_INPUT, {"operand1": "x", "operand2": 2, "extra": 1})
    assert {"path": "operand1", "message": "'x' is not of type 'number'"} in problems
    assert any("extra" in p["message"] for p in problems)


def test_a_missing_property_is_named_by_its_path():
    schema = {
        "type": "object",
        "required": ["a", "b", "c"],
        "properties": {"inner": {"type": "object", "required": ["x"]}},
    }
    problems = schema_errors(schema, {"b": 1, "inner": {}})
    assert [p["path"] for p in problems] == ["a", "c", "inner.x"]
    assert problems[0]["message"] == "'a' is a required property"
    assert schema_errors({"type": "object"}, []) == [{"path": "(root)", "message": "[] is not of type 'object'"}]


class FakeRpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "error_type", "http_status"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.NoCapacity, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.AllocationTimeout, 504),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.WorkerStartFailed, 502),
        (grpc.StatusCode.UNAVAILABLE, errors.SupervisorUnavailable, 503),
        (grpc.StatusCode.INTERNAL, errors.GatewayError, 500),
    ],
)
def test_supervisor_status_codes_map_to_http(code, error_type, http_status):
    error = allocation_error("python", "127.0.0.1:1", FakeRpcError(code, "why"))
    assert type(error) is error_type
    assert error.http_status == http_status
    if http_status == 503:
        assert error.retry_after

"""Bad input at the gateway: JSON nesting limit, and how a worker's end becomes the client's error."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from platform_core.gateway import errors
from platform_core.gateway.execution import arguments_parse, error_explained, json_depth
from platform_core.gateway.runtime_client import ReleaseReport

PLUGIN = SimpleNamespace(memory_mb=256, runtime_id="python")


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_json_depth_counts_arrays_and_objects():
    assert json_depth(1, 64) == 0
    assert json_depth({"a": [1, {"b": []}]}, 64) == 4
    assert json_depth([[[[]]]], 2) == 3  # stops counting past the limit


@pytest.mark.parametrize("depth", [64, 1])
def test_documents_within_the_limit_parse(depth):
    assert json_depth(arguments_parse(nested(depth)), 100) == depth


@pytest.mark.parametrize("body", [nested(65), nested(100_000), b'{"a":' * 70 + b"1" + b"}" * 70])
def test_deeper_documents_are_400_never_a_crash(body):
    with pytest.raises(errors.InvalidInput, match="nested deeper than 64 levels"):
        arguments_parse(body)


def test_many_brackets_side_by_side_are_not_deep():
    assert arguments_parse(b"[" + b"[]," * 500 + b"[]]") is not None


def test_a_worker_lost_at_its_memory_limit_names_the_limit():
    lost = errors.WorkerLost("connection to worker worker-1 lost: unavailable (Socket closed)")
    error = error_explained(lost, ReleaseReport(exit_cause="memory_limit", exit_detail="..."), PLUGIN)
    assert isinstance(error, errors.MemoryLimitExceeded)
    assert (error.http_status, error.code) == (502, "memory_limit_exceeded")
    assert error.message == "worker exceeded its memory limit (256 MB)"


def test_a_memory_error_in_the_plugin_names_the_limit_too():
    failed = errors.PluginFailed("the plugin ran out of memory (MemoryError)", code="out_of_memory")
    error = error_explained(failed, ReleaseReport(), PLUGIN)
    assert error.code == "memory_limit_exceeded"
    assert error.message.startswith("worker exceeded its memory limit (256 MB): ")


def test_other_causes_and_a_lost_supervisor():
    lost = errors.WorkerLost("connection to worker worker-1 lost")
    crashed = error_explained(lost, ReleaseReport(exit_cause="crashed", exit_detail="worker crashed (SIGSEGV)"), PLUGIN)
    assert crashed.code == "worker_lost" and crashed.message.endswith(": worker crashed (SIGSEGV)")
    cpu = error_explained(lost, ReleaseReport(exit_cause="cpu_time_limit", exit_detail="CPU time"), PLUGIN)
    assert (cpu.http_status, cpu.code) == (502, "cpu_limit_exceeded")
    gone = error_explained(lost, ReleaseReport(supervisor_lost=True), PLUGIN)
    assert (gone.http_status, gone.code, gone.retry_after) == (503, "supervisor_unavailable", 5)
    assert error_explained(lost, ReleaseReport(), PLUGIN) is lost
    plugin_failure = errors.PluginFailed("division by zero", code="division_by_zero")
    assert error_explained(plugin_failure, ReleaseReport(supervisor_lost=True), PLUGIN) is plugin_failure


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_an_invocation_that_cannot_be_recorded_is_a_json_500(monkeypatch):
    from django.db import OperationalError

    from platform_core.gateway import execution
    from platform_core.tenancy.callers import Caller

    async def locked(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(execution, "invocation_finish", locked)
    outcome = await execution.invocation_execute(
        invocation_id=str(uuid.uuid4()), name="nope", body=b"{}", caller=Caller(), request_line="POST /"
    )
    assert (outcome.http_status, outcome.error.code) == (500, "record_failed")
    assert "could not be recorded" in outcome.error.message

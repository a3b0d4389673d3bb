"""Faults survived, over HTTP: a supervisor killed mid-invocation, a worker that never becomes
ready, a worker that stalls mid-stream, the database locked for a while, and a gateway killed
mid-invocation (restarted, it marks what it left running as interrupted and frees the worker).

A worker killed mid-invocation is tests/e2e/test_api_e2e.py.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import httpx
import pytest

from tests.reliability.hostile import (
    Background,
    invocation,
    run_hostile,
    subtract_still_works,
    workers_of,
)
from tests.support.platform import running_worker
from tests.support.waits import wait_for

pytestmark = pytest.mark.e2e

SLOW = {"steps": 100, "delay_ms": 100}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, *, what: str) -> None:
    wait_for(lambda: not _alive(pid), what=what, timeout_s=10)


def test_supervisor_killed_mid_invocation_is_503_fast_and_the_platform_recovers(fresh_platform):
    platform = fresh_platform()
    with platform.client() as api:
        call = Background.post(platform, "/api/v1/plugins/slow_count/invoke", SLOW)
        worker = running_worker(api, "slow_count")
        killed_at = time.monotonic()
        platform.stop_process("supervisor-python", signal.SIGKILL)

        response = call.result(timeout_s=30)
        assert time.monotonic() - killed_at < 5, "the in-flight request hung on the dead supervisor"
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"].isdigit()
        assert response.json()["error"]["code"] == "supervisor_unavailable"
        assert "went away" in response.json()["error"]["message"]
        assert invocation(api, response.json()["invocation_id"])["status"] == "unavailable"
        _wait_gone(worker["pid"], what="the worker gone with its supervisor")

        started = time.monotonic()
        down = api.post("/api/v1/calculate/subtract", json={"operand1": 3, "operand2": 1})
        assert down.status_code == 503 and time.monotonic() - started < 3
        assert down.json()["error"]["code"] == "supervisor_unavailable"

        platform.start_supervisor("python")
        answers: list[httpx.Response] = []

        def subtract_answers() -> bool:
            answers.append(api.post("/api/v1/calculate/subtract", json={"operand1": 3, "operand2": 1}))
            return answers[-1].status_code == 200

        wait_for(subtract_answers, what="subtract answering again after the supervisor came back", timeout_s=15)
        assert answers[-1].json()["result"] == 2.0


def test_a_worker_that_never_becomes_ready_is_an_allocation_timeout(reliability_platform, rapi):
    started = time.monotonic()
    response = run_hostile(reliability_platform, rapi, "never_ready")

    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "allocation_timeout"
    assert time.monotonic() - started < 20
    stored = invocation(rapi, response.json()["invocation_id"])
    assert stored["status"] == "timeout"


def test_a_worker_that_stalls_mid_stream_times_out(reliability_platform, rapi):
    response = run_hostile(reliability_platform, rapi, "stall")

    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "timeout"
    stored = invocation(rapi, response.json()["invocation_id"])
    kinds = [event["kind"] for event in stored["trace"]]
    assert "progress" in kinds and "cancel_request" in kinds and "worker_removed" in kinds


def test_requests_wait_out_a_locked_database_and_are_recorded(reliability_platform, rapi):
    subtract_still_works(rapi)  # registry and API key cached, a warm platform
    lock = sqlite3.connect(reliability_platform.workdir / "db.sqlite3", timeout=10, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        calls = [
            Background.post(reliability_platform, "/api/v1/calculate/subtract", {"operand1": i, "operand2": 1})
            for i in range(4)
        ]
        time.sleep(1.2)  # the fault itself: the database stays locked for a while
        # Readers are not blocked (WAL): the history answers while writers wait.
        assert rapi.get("/api/v1/invocations", params={"page_size": 1}).status_code == 200
        assert all(call.thread.is_alive() for call in calls), "a write was answered while the database was locked"
    finally:
        lock.execute("COMMIT")
        lock.close()
    responses = [call.result() for call in calls]
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert sorted(r.json()["result"] for r in responses) == [-1.0, 0.0, 1.0, 2.0]
    for response in responses:
        assert invocation(rapi, response.json()["invocation_id"])["status"] == "succeeded"


def test_a_gateway_killed_mid_invocation_marks_it_interrupted_on_restart(fresh_platform):
    platform = fresh_platform()
    with platform.client() as api:
        call = Background.post(platform, "/api/v1/plugins/slow_count/invoke", SLOW)
        worker = running_worker(api, "slow_count")
        running: list[dict] = []

        def recorded_running() -> bool:
            running[:] = api.get("/api/v1/invocations", params={"status": "running"}).json()["results"]
            return bool(running)

        wait_for(recorded_running, what="the running invocation recorded")
        (left,) = running
        platform.stop_process("gateway", signal.SIGKILL)
        call.thread.join(timeout=10)
        assert "error" in call.box, "a killed gateway cannot have answered"

    platform.start_gateway()

    with platform.client() as api:
        stored = invocation(api, left["id"])
        assert stored["status"] == "interrupted"
        assert stored["error"]["code"] == "interrupted"
        assert stored["finished_at"] is not None
        assert [event["kind"] for event in stored["trace"]] == ["interrupted"]
        # Its worker was taken back from the supervisor and stopped.
        assert not workers_of(api, "slow_count")
        _wait_gone(worker["pid"], what="the reclaimed worker stopped")
        assert "1 invocation(s) marked interrupted, 1 worker(s) reclaimed" in platform.log("gateway")
        # A restart that finds nothing to recover changes nothing else.
        assert api.get("/api/v1/invocations", params={"status": "running"}).json()["count"] == 0
        subtract_still_works(api)


def _supervisor_workers(platform, runtime: str = "python") -> list:
    """The supervisor's own list (the gateway may be gone): ListWorkers over gRPC."""
    import grpc

    from platform_core.rpc import sup_grpc, sup_pb2

    with grpc.insecure_channel(f"127.0.0.1:{platform.supervisor_ports[runtime]}") as channel:
        return list(
            sup_grpc.RuntimeSupervisorStub(channel).ListWorkers(sup_pb2.ListWorkersRequest(), timeout=5).workers
        )


def test_a_gateway_killed_for_good_loses_its_workers_when_their_leases_expire(fresh_platform):
    """No restart, no ReclaimLeases: the supervisor takes the workers back by itself."""
    platform = fresh_platform(extra_env={"LEASE_TTL_S": "2"})
    platform.add_plugin_variant("subtract_numbers", "subtract_kept", mode="pooled", min_idle=0, max_workers=1)
    with platform.client() as api:
        kept = api.post("/api/v1/plugins/subtract_kept/invoke", json={"operand1": 2, "operand2": 1}).json()
        call = Background.post(platform, "/api/v1/plugins/slow_count/invoke", SLOW)
        slow = running_worker(api, "slow_count")
    held = {w.worker_id: w.pid for w in _supervisor_workers(platform)}
    assert {kept["worker_id"], slow["worker_id"]} <= set(held)
    platform.stop_process("gateway", signal.SIGKILL)
    call.thread.join(timeout=10)

    wait_for(
        lambda: not {kept["worker_id"], slow["worker_id"]} & {w.worker_id for w in _supervisor_workers(platform)},
        what="the supervisor took back the workers of the dead gateway (lease TTL 2 s)",
        timeout_s=15,
    )
    _wait_gone(held[kept["worker_id"]], what="the kept worker stopped")
    _wait_gone(held[slow["worker_id"]], what="the slow worker stopped")
    assert platform.log("supervisor-python").count("lease expired") >= 2

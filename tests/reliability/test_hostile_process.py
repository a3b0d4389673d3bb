"""Hostile plugins on the process backend, over HTTP: each is stopped, the API says why, and the
platform answers a normal request while it misbehaves and after.

What a sandboxed worker can reach (files, the network, processes, privileges) is tested with the
prober plugin in tests/reliability/test_isolation_process.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from platform_core.supervisor.backends import cgroups
from tests.reliability.hostile import MEMORY_MB, Background, invocation, run_hostile
from tests.support.platform import pids_using, running_worker
from tests.support.waits import wait_for

pytestmark = pytest.mark.e2e
needs_pids_cgroups = pytest.mark.skipif(
    not cgroups.available(), reason="no pids cgroup here (needs root): the process backend cannot bound forks"
)


def test_memory_hog_is_stopped_at_its_memory_limit(reliability_platform, rapi):
    response = run_hostile(reliability_platform, rapi, "memory_hog")

    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "memory_limit_exceeded"
    assert f"worker exceeded its memory limit ({MEMORY_MB} MB)" in error["message"]
    stored = invocation(rapi, response.json()["invocation_id"])
    assert stored["status"] == "failed"
    assert stored["error"]["code"] == "memory_limit_exceeded"


def test_cpu_spinner_times_out_and_its_worker_is_killed(reliability_platform, rapi):
    response = run_hostile(reliability_platform, rapi, "cpu_spinner")

    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "timeout"
    stored = invocation(rapi, response.json()["invocation_id"])
    assert stored["status"] == "timeout"
    assert stored["timings_ms"]["total"] < 10_000
    assert "cancel_request" in [event["kind"] for event in stored["trace"]]


@needs_pids_cgroups
def test_fork_bomb_stops_at_the_pids_limit_and_leaves_no_process(reliability_platform, rapi):
    root = str(reliability_platform.socket_root)
    before = len(pids_using(root))

    response = run_hostile(reliability_platform, rapi, "fork_bomb")

    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "timeout"
    stored = invocation(rapi, response.json()["invocation_id"])
    assert "fork bomb: pids limit 64" in stored["worker_log"]
    # The limit was hit: fork() (or a thread of gRPC's) failed with EAGAIN.
    assert "Resource temporarily unavailable" in stored["worker_log"], stored["worker_log"]
    # Every process the bomb made is gone with its worker (none escaped to its own session).
    wait_for(lambda: len(pids_using(root)) <= before, what="every process of the fork bomb gone")


def test_megabytes_of_output_are_bounded_in_the_record(reliability_platform, rapi):
    response = run_hostile(reliability_platform, rapi, "output_flood", {"megabytes": 8, "log_lines": 3000})

    assert response.status_code == 200, response.text
    stored = invocation(rapi, response.json()["invocation_id"])
    assert stored["worker_log_truncated"] is True
    assert len(stored["worker_log"].encode()) <= 2 * 65536
    assert "log line 0 " in stored["worker_log"]


def test_a_huge_result_is_refused_with_a_clear_message(reliability_platform, rapi):
    response = run_hostile(reliability_platform, rapi, "huge_result", {"megabytes": 12})

    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_output"
    assert "larger than 8388608 bytes (MAX_RESULT_BYTES)" in error["message"]
    assert invocation(rapi, response.json()["invocation_id"])["result"] is None


@needs_pids_cgroups
def test_process_workers_are_confined_to_their_pids_cgroup(reliability_platform, rapi):
    """While a worker runs, it sits in a pids cgroup of its own with the plugin's limit."""
    call = Background.post(reliability_platform, "/api/v1/plugins/hostile_stall/invoke", {})
    worker = running_worker(rapi, "hostile_stall")
    lines = Path(f"/proc/{worker['pid']}/cgroup").read_text().splitlines()
    (pids,) = [line.split(":", 2)[2] for line in lines if ":pids:" in line]
    assert pids.startswith(f"/plugin-platform/{reliability_platform.supervisor_id('python')}-")
    assert pids.endswith(f"/{worker['worker_id']}")
    group = Path("/sys/fs/cgroup/pids" + pids)
    assert (group / "pids.max").read_text().strip() == "64"
    assert call.result().status_code == 504
    assert not group.exists(), "the worker's cgroup outlived it"

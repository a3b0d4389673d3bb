"""Hostile plugins in hardened containers, over HTTP: each is stopped or fails, the API says why,
the platform answers a normal request while it misbehaves and after, and no container is left.

Same plugins and checks as tests/reliability/test_hostile_process.py, plus what only the docker
backend contains: writes outside the temp directory (read-only root) and the network (none).
"""

from __future__ import annotations

import pytest

from tests.docker.conftest import containers_of, wait_until_gone
from tests.reliability.hostile import MEMORY_MB, invocation, register_hostile, run_hostile

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


@pytest.fixture(scope="module")
def hostile_docker(docker_platform):
    register_hostile(docker_platform, backend="docker")
    return docker_platform


@pytest.fixture
def hapi(hostile_docker, docker_client):
    with hostile_docker.client() as client:
        yield client
    # Every hostile container is gone once its invocation has answered.
    supervisor = hostile_docker.supervisor_id("python")
    left = [
        c
        for c in wait_until_gone(docker_client, supervisor)
        if "hostile" in c["Labels"].get("plugin-platform.plugin", "")
    ]
    assert not left, [c["Names"] for c in left]


def test_memory_hog_is_oom_killed_and_the_error_names_the_limit(hostile_docker, hapi):
    response = run_hostile(hostile_docker, hapi, "memory_hog")

    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "memory_limit_exceeded"
    assert error["message"] == f"worker exceeded its memory limit ({MEMORY_MB} MB)"
    stored = invocation(hapi, response.json()["invocation_id"])
    assert stored["status"] == "failed"
    assert any("memory limit" in event["detail"] for event in stored["trace"])


def test_cpu_spinner_times_out_and_its_container_is_removed(hostile_docker, hapi):
    response = run_hostile(hostile_docker, hapi, "cpu_spinner")

    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "timeout"
    assert invocation(hapi, response.json()["invocation_id"])["status"] == "timeout"


def test_fork_bomb_stops_at_the_pids_limit(hostile_docker, hapi):
    response = run_hostile(hostile_docker, hapi, "fork_bomb")

    assert response.status_code == 504, response.text
    stored = invocation(hapi, response.json()["invocation_id"])
    assert "fork bomb: pids limit 64" in stored["worker_log"]
    # The limit was hit: fork() (or a thread of gRPC's) failed with EAGAIN.
    assert "Resource temporarily unavailable" in stored["worker_log"], stored["worker_log"]


def test_writes_outside_the_temp_dir_fail_on_the_read_only_root(hostile_docker, hapi):
    response = run_hostile(hostile_docker, hapi, "fs_writer")

    assert response.status_code == 200, response.text
    outcome = response.json()["result"]
    assert outcome["temp_dir"] == "written (and removed again)"
    assert outcome["code_dir"].startswith("failed: [Errno 30] Read-only file system"), outcome


def test_the_network_cannot_be_opened(hostile_docker, hapi):
    # The gateway's own port: reachable from the host's loopback, not from the container's.
    response = run_hostile(hostile_docker, hapi, "net_opener", {"port": hostile_docker.http_port})

    assert response.status_code == 200, response.text
    outcome = response.json()["result"]
    assert outcome["loopback"].startswith("failed: [Errno 111] Connection refused"), outcome
    assert outcome["resolve"].startswith("failed:"), outcome


def test_megabytes_of_output_are_bounded(hostile_docker, hapi):
    response = run_hostile(hostile_docker, hapi, "output_flood", {"megabytes": 8, "log_lines": 3000})

    assert response.status_code == 200, response.text
    stored = invocation(hapi, response.json()["invocation_id"])
    assert stored["worker_log_truncated"] is True
    assert len(stored["worker_log"].encode()) <= 2 * 65536


def test_a_huge_result_is_refused_with_a_clear_message(hostile_docker, hapi):
    response = run_hostile(hostile_docker, hapi, "huge_result", {"megabytes": 12})

    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_output"
    assert "(MAX_RESULT_BYTES)" in error["message"]


def test_no_hostile_container_is_left(hostile_docker, docker_client):
    labels = [c["Labels"] for c in containers_of(docker_client, hostile_docker.supervisor_id("python"))]
    assert not [label for label in labels if label.get("plugin-platform.plugin", "").startswith("hostile_")]

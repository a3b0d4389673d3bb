"""A supervisor's probe port: grpc.health.v1 Check, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest

from platform_core.rpc import sup_grpc, sup_pb2
from platform_core.supervisor.health import probe
from tests.support.platform import REPO, free_port, wait_for_port


def test_the_health_port_says_serving_and_serves_nothing_else(socket_root):
    port, health_port = free_port(), free_port()
    env = {**os.environ, "SUPERVISOR_SOCKET_ROOT": str(socket_root), "PLATFORM_VAR_DIR": str(socket_root)}
    command = [
        sys.executable,
        "manage.py",
        "runsupervisor",
        "--runtime=python",
        f"--listen=127.0.0.1:{port}",
        f"--health-listen=127.0.0.1:{health_port}",
    ]
    supervisor = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, supervisor)
        wait_for_port(health_port, supervisor)
        assert probe(f"127.0.0.1:{health_port}")
        as_command = [sys.executable, "-m", "platform_core.supervisor.health", f"127.0.0.1:{health_port}"]
        assert subprocess.run(as_command, cwd=REPO, timeout=30).returncode == 0
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            stub = sup_grpc.RuntimeSupervisorStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListWorkers(sup_pb2.ListWorkersRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        supervisor.terminate()
        supervisor.wait(30)
    assert not probe(f"127.0.0.1:{health_port}", timeout_s=1)

"""Each worker SDK (Python, Java, Node.js) gives plugin code the ``traceparent`` of its PPP call.

The worker is started from its runtime's built-in recipe, exactly as a supervisor would start it,
and sent a PPP Invoke whose ``Context`` carries a traceparent and a tracestate; its
``context_echo`` plugin answers with what its SDK's ``InvocationContext`` exposes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import grpc
import pytest

from platform_core.rpc import ppp_grpc, ppp_pb2
from platform_core.runtimes import BUILTIN_RUNTIMES, render, worker_values
from tests.support.waits import wait_for

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ENTRYPOINTS = {
    "python": "plugins.context_echo:plugin",
    "java": "platform.workers.ContextEchoPluginService",
    "node": "plugins/context_echo",
}


@pytest.mark.parametrize(
    "runtime", ["python", pytest.param("java", marks=pytest.mark.java), pytest.param("node", marks=pytest.mark.node)]
)
def test_a_plugin_sees_the_traceparent_of_its_call(runtime):
    spec = BUILTIN_RUNTIMES[runtime]
    directory = Path(tempfile.mkdtemp(prefix="ppo-", dir="/tmp"))
    socket = directory / "w.sock"
    values = {
        **spec.host_values(),
        **worker_values(socket=str(socket), entrypoint=ENTRYPOINTS[runtime], concurrency=2, memory_bytes=256 << 20),
    }
    env = {**os.environ, **spec.resolved_env(), "PPP_PARENT_PID": str(os.getpid())}
    worker = subprocess.Popen(render(spec.command, values), cwd=spec.resolved_workdir(), env=env)
    try:
        channel = grpc.insecure_channel(f"unix://{socket}")
        stub = ppp_grpc.PluginWorkerStub(channel)

        def serving() -> bool:
            assert worker.poll() is None, f"the {runtime} worker exited with {worker.returncode}"
            try:
                return stub.Health(ppp_pb2.HealthRequest(), timeout=1).status == ppp_pb2.HealthResponse.SERVING
            except grpc.RpcError:
                return False

        wait_for(serving, what=f"the {runtime} worker serving PPP Health", timeout_s=30, every_s=0.05)
        context = ppp_pb2.Context(
            tenant_id="acme", request_id="r-1", traceparent=TRACEPARENT, tracestate="vendor=1,other=2"
        )
        request = ppp_pb2.InvokeRequest(primitive="context_echo", arguments=b"{}", request_id="r-1", context=context)
        messages = list(stub.Invoke(request, timeout=30))
        assert messages[-1].WhichOneof("kind") == "completed", messages[-1]
        seen = json.loads(messages[-1].completed.output)
        assert seen == {
            "tenant_id": "acme",
            "request_id": "r-1",
            "traceparent": TRACEPARENT,
            "tracestate": "vendor=1,other=2",
        }
        channel.close()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        shutil.rmtree(directory, ignore_errors=True)

"""For tests that drive supervisors and workers directly: a supervisor running for the length of
a block, and one PPP session with a worker as the gateway runs it (Init, then one Invoke)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import grpc

from platform_core.rpc import ppp_grpc, ppp_pb2
from platform_core.supervisor.service import Supervisor


@contextlib.asynccontextmanager
async def running(supervisor: Supervisor) -> AsyncIterator[Supervisor]:
    """``supervisor`` started (its stem cells being made), and shut down at the end."""
    await supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.shutdown()


async def invoke_once(address: str, primitive: str, arguments: dict, *, timeout_s: float = 20) -> dict:
    """Init (must be ok), then Invoke: the Completed output as JSON, or ``{"failed": code,
    "message": ...}``. A deadline or a lost worker raises ``grpc.aio.AioRpcError``."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ppp_grpc.PluginWorkerStub(channel)
        init = await stub.Init(ppp_pb2.InitRequest(), timeout=10)
        assert init.ok, init.message
        request = ppp_pb2.InvokeRequest(primitive=primitive, arguments=json.dumps(arguments).encode())
        async for message in stub.Invoke(request, timeout=timeout_s):
            if message.HasField("completed"):
                return json.loads(message.completed.output)
            if message.HasField("failed"):
                return {"failed": message.failed.code, "message": message.failed.message}
    raise AssertionError("the Invoke stream ended without Completed or Failed")

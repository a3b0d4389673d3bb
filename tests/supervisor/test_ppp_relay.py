"""The supervisor's PPP relay: real workers behind it, real gRPC on loopback in front of it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from platform_core.rpc import PPP_RELAY_WORKER_KEY, ppp_grpc, ppp_pb2, sup_grpc, sup_pb2
from platform_core.rpc.host_identity import LocalHost
from platform_core.supervisor import grpc_service
from platform_core.supervisor.model import PluginRef
from platform_core.supervisor.ppp_relay import PppRelay
from tests.supervisor.conftest import make_supervisor

SUBTRACT = PluginRef(name="subtract_numbers", runtime="python", entrypoint="plugins.subtract_numbers:plugin")
SLOW = PluginRef(name="slow_count", runtime="python", entrypoint="plugins.slow_count:plugin")


def worker_metadata(worker_id: str) -> tuple[tuple[str, str], ...]:
    return ((PPP_RELAY_WORKER_KEY, worker_id),)


@pytest.fixture
async def relayed(socket_root):
    """A supervisor serving its API and relay on loopback, and a PPP stub of that address."""
    supervisor = make_supervisor(socket_root)
    server = grpc.aio.server()
    relay = grpc_service.add_to_server(server, supervisor, LocalHost(socket_root=str(socket_root), name="host-a"))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield supervisor, ppp_grpc.PluginWorkerStub(channel), sup_grpc.RuntimeSupervisorStub(channel)
    finally:
        await channel.close()
        await supervisor.shutdown()
        await server.stop(None)
        await relay.close()


async def test_init_invoke_and_health_reach_the_worker_through_the_relay(relayed):
    _, ppp, api = relayed
    ref = sup_pb2.PluginRef(name=SUBTRACT.name, runtime="python", entrypoint=SUBTRACT.entrypoint)
    handle = (await api.AllocateWorker(sup_pb2.AllocateWorkerRequest(plugin=ref))).worker
    assert handle.host_id.startswith("h-") and handle.host_name == "host-a"
    listed = await api.ListWorkers(sup_pb2.ListWorkersRequest())
    assert (listed.host_id, listed.host_name) == (handle.host_id, "host-a")
    metadata = worker_metadata(handle.worker_id)
    health = await ppp.Health(ppp_pb2.HealthRequest(), metadata=metadata, timeout=5)
    assert health.status == ppp_pb2.HealthResponse.SERVING
    init = await ppp.Init(ppp_pb2.InitRequest(context=ppp_pb2.Context(tenant_id="t")), metadata=metadata, timeout=5)
    assert init.ok
    request = ppp_pb2.InvokeRequest(
        primitive="subtract_numbers", arguments=json.dumps({"operand1": 10, "operand2": 5}).encode()
    )
    kinds, output = [], None
    async for message in ppp.Invoke(request, metadata=metadata, timeout=5):
        kinds.append(message.WhichOneof("kind"))
        if message.HasField("completed"):
            output = json.loads(message.completed.output)
    assert kinds[-1] == "completed" and "progress" in kinds
    assert output["result"] == 5


async def test_a_call_for_a_worker_the_supervisor_does_not_own_is_refused(relayed):
    supervisor, ppp, _ = relayed
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await ppp.Health(ppp_pb2.HealthRequest(), metadata=worker_metadata("worker-99999"), timeout=5)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as unnamed:
        await ppp.Health(ppp_pb2.HealthRequest(), timeout=5)
    assert unnamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A released (removed) worker is no longer reachable either.
    worker, _, _ = await supervisor.allocate(SUBTRACT)
    await supervisor.release(worker.worker_id, reason="done")
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await ppp.Health(ppp_pb2.HealthRequest(), metadata=worker_metadata(worker.worker_id), timeout=5)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_worker_killed_mid_stream_ends_the_relayed_call_as_a_lost_connection(relayed):
    supervisor, ppp, _ = relayed
    worker, _, _ = await supervisor.allocate(SLOW)
    request = ppp_pb2.InvokeRequest(primitive="slow_count", arguments=b'{"steps": 50, "delay_ms": 100}')
    call = ppp.Invoke(request, metadata=worker_metadata(worker.worker_id), timeout=30)
    await call.read()  # the first message: the worker is inside its call
    os.kill(worker.pid, signal.SIGKILL)
    with pytest.raises(grpc.aio.AioRpcError) as lost:
        await read_to_the_end(call)
    # What a gateway sees on a local worker's socket when the worker dies.
    assert lost.value.code() == grpc.StatusCode.UNAVAILABLE
    await supervisor.cancel(worker.worker_id, reason="test")


async def read_to_the_end(call) -> None:
    while await call.read() != grpc.aio.EOF:
        pass


@dataclass
class FakeWorker:
    """Stands in for a supervisor's Worker record (the relay reads only these two)."""

    address: str
    alive: bool = True


class Recorder(ppp_grpc.PluginWorkerServicer):
    """A real PPP server on a Unix socket that records what each call saw."""

    def __init__(self) -> None:
        self.time_remaining: float | None = None
        self.metadata: dict[str, str] = {}
        self.cancelled = asyncio.Event()

    async def Health(self, request, context):
        self.time_remaining = context.time_remaining()
        self.metadata = dict(context.invocation_metadata())
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "worker says: too big")

    async def Invoke(self, request, context):
        yield ppp_pb2.PluginMessage(progress=ppp_pb2.Progress(percent=1))
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # grpc cancels the handler when its caller cancels
            self.cancelled.set()
            raise


async def echo(requests, context):
    async for request in requests:
        yield request[::-1]


@pytest.fixture
async def recorder_behind_relay(tmp_path):
    """A recording PPP server on a Unix socket, reachable only through a relay on loopback."""
    recorder = Recorder()
    worker_server = grpc.aio.server()
    ppp_grpc.add_PluginWorkerServicer_to_server(recorder, worker_server)
    # A method PPP does not have (yet): the relay must carry it without knowing it.
    worker_server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "ppp.v1.PluginWorker", {"Echo": grpc.stream_stream_rpc_method_handler(echo)}
            ),
        )
    )
    socket = Path(tmp_path) / "w.sock"
    worker_server.add_insecure_port(f"unix://{socket}")
    await worker_server.start()
    relay = PppRelay({"worker-1": FakeWorker(f"unix://{socket}")})
    relay_server = grpc.aio.server()
    relay_server.add_generic_rpc_handlers((relay,))
    port = relay_server.add_insecure_port("127.0.0.1:0")
    await relay_server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield recorder, channel
    finally:
        await channel.close()
        await relay_server.stop(None)
        await relay.close()
        await worker_server.stop(None)


async def test_deadline_status_and_metadata_cross_the_relay(recorder_behind_relay):
    recorder, channel = recorder_behind_relay
    ppp = ppp_grpc.PluginWorkerStub(channel)
    metadata = (*worker_metadata("worker-1"), ("traceparent", "00-abc-def-01"), ("x-supervisor-secret", "s"))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await ppp.Health(ppp_pb2.HealthRequest(), metadata=metadata, timeout=3)
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failed.value.details() == "worker says: too big"
    assert recorder.time_remaining is not None and 0 < recorder.time_remaining <= 3
    # The caller's own metadata goes on; the hop's (worker id, secret) does not.
    assert recorder.metadata.get("traceparent") == "00-abc-def-01"
    assert PPP_RELAY_WORKER_KEY not in recorder.metadata and "x-supervisor-secret" not in recorder.metadata


async def test_a_cancelled_caller_cancels_the_workers_call(recorder_behind_relay):
    recorder, channel = recorder_behind_relay
    call = ppp_grpc.PluginWorkerStub(channel).Invoke(ppp_pb2.InvokeRequest(), metadata=worker_metadata("worker-1"))
    await call.read()  # the first progress message: the worker is inside its call
    call.cancel()
    await asyncio.wait_for(recorder.cancelled.wait(), timeout=5)


async def test_a_method_the_relay_does_not_know_is_relayed_as_a_stream(recorder_behind_relay):
    _, channel = recorder_behind_relay
    call = channel.stream_stream("/ppp.v1.PluginWorker/Echo")(metadata=worker_metadata("worker-1"), timeout=5)
    await call.write(b"abc")
    assert await call.read() == b"cba"
    await call.write(b"xyz")
    await call.done_writing()
    assert await call.read() == b"zyx"
    assert await call.read() == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    missing = channel.unary_unary("/ppp.v1.PluginWorker/Nothing")
    with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
        await missing(b"", metadata=worker_metadata("worker-1"), timeout=5)
    assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED

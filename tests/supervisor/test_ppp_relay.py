"""The supervisor's PPP relay: real workers behind it, the gateway's own channels in front of it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from platform_core.gateway.worker_route import WorkerRoute, open_channel
from platform_core.rpc import ppp_grpc, ppp_pb2, sup_grpc, sup_pb2
from platform_core.rpc.host_identity import LocalHost
from platform_core.supervisor import grpc_service
from platform_core.supervisor.model import PluginRef
from platform_core.supervisor.ppp_relay import PppRelay, relay_target
from tests.supervisor.conftest import make_supervisor

SUBTRACT = PluginRef(name="subtract_numbers", runtime="python", entrypoint="plugins.subtract_numbers:plugin")
SLOW = PluginRef(name="slow_count", runtime="python", entrypoint="plugins.slow_count:plugin")


def through(relay_port: int, worker_id: str, secret: str = "") -> grpc.aio.Channel:
    """The channel a gateway on another host opens to ``worker_id`` (worker_route.open_channel)."""
    route = WorkerRoute(worker_id, relay_target(worker_id), f"127.0.0.1:{relay_port}", "")
    return open_channel(route, tls=None, secret=secret)


@pytest.fixture
async def relayed(socket_root):
    """A supervisor with its API and its relay on loopback."""
    supervisor = make_supervisor(socket_root)
    relay = PppRelay(supervisor.workers)
    relay_port = await relay.start("127.0.0.1", 0)
    server = grpc.aio.server()
    grpc_service.add_to_server(server, supervisor, LocalHost(socket_root=str(socket_root), name="host-a"), relay_port)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield supervisor, sup_grpc.RuntimeSupervisorStub(channel), relay_port
    finally:
        await channel.close()
        await supervisor.shutdown()
        await server.stop(None)
        await relay.close()


async def test_init_invoke_and_health_reach_the_worker_through_the_relay(relayed):
    _, api, relay_port = relayed
    ref = sup_pb2.PluginRef(name=SUBTRACT.name, runtime="python", entrypoint=SUBTRACT.entrypoint)
    handle = (await api.AllocateWorker(sup_pb2.AllocateWorkerRequest(plugin=ref))).worker
    assert handle.host_id.startswith("h-") and handle.host_name == "host-a" and handle.relay_port == relay_port
    listed = await api.ListWorkers(sup_pb2.ListWorkersRequest())
    assert (listed.host_id, listed.host_name) == (handle.host_id, "host-a")
    async with through(relay_port, handle.worker_id) as channel:
        ppp = ppp_grpc.PluginWorkerStub(channel)
        health = await ppp.Health(ppp_pb2.HealthRequest(), timeout=5)
        assert health.status == ppp_pb2.HealthResponse.SERVING
        init = await ppp.Init(ppp_pb2.InitRequest(context=ppp_pb2.Context(tenant_id="t")), timeout=5)
        assert init.ok
        arguments = json.dumps({"operand1": 10, "operand2": 5}).encode()
        messages = [
            m async for m in ppp.Invoke(ppp_pb2.InvokeRequest(primitive="subtract_numbers", arguments=arguments))
        ]
    kinds = [m.WhichOneof("kind") for m in messages]
    assert kinds[-1] == "completed" and "progress" in kinds
    assert json.loads(messages[-1].completed.output)["result"] == 5


async def test_a_connection_for_a_worker_the_supervisor_does_not_own_is_refused_and_logged(relayed, caplog):
    supervisor, _, relay_port = relayed
    caplog.set_level(logging.WARNING, "platform_core.supervisor.ppp_relay")
    async with through(relay_port, "worker-99999") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await ppp_grpc.PluginWorkerStub(channel).Health(ppp_pb2.HealthRequest(), timeout=5)
    assert unknown.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "worker-99999 is not a live worker of this supervisor" in caplog.text
    # A released (removed) worker is no longer reachable either.
    worker, _, _, _ = await supervisor.allocate(SUBTRACT)
    await supervisor.release(worker.worker_id, reason="done")
    async with through(relay_port, worker.worker_id) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await ppp_grpc.PluginWorkerStub(channel).Health(ppp_pb2.HealthRequest(), timeout=5)
    assert gone.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_worker_killed_mid_stream_ends_the_relayed_call_as_a_lost_connection(relayed):
    supervisor, _, relay_port = relayed
    worker, _, _, _ = await supervisor.allocate(SLOW)
    request = ppp_pb2.InvokeRequest(primitive="slow_count", arguments=b'{"steps": 50, "delay_ms": 100}')
    async with through(relay_port, worker.worker_id) as channel:
        call = ppp_grpc.PluginWorkerStub(channel).Invoke(request, timeout=30)
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
    echo_handler = grpc.stream_stream_rpc_method_handler(echo)
    worker_server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("ppp.v1.PluginWorker", {"Echo": echo_handler}),)
    )
    socket = Path(tmp_path) / "w.sock"
    worker_server.add_insecure_port(f"unix://{socket}")
    await worker_server.start()
    relay = PppRelay({"worker-1": FakeWorker(f"unix://{socket}")}, secret="s3cret")
    port = await relay.start("127.0.0.1", 0)
    try:
        yield recorder, port
    finally:
        await relay.close()
        await worker_server.stop(None)


async def test_deadline_status_and_metadata_cross_the_relay(recorder_behind_relay):
    recorder, port = recorder_behind_relay
    async with through(port, "worker-1", "s3cret") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await ppp_grpc.PluginWorkerStub(channel).Health(
                ppp_pb2.HealthRequest(), metadata=(("traceparent", "00-abc-def-01"),), timeout=3
            )
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failed.value.details() == "worker says: too big"
    assert recorder.time_remaining is not None and 0 < recorder.time_remaining <= 3
    assert recorder.metadata.get("traceparent") == "00-abc-def-01"


async def test_without_tls_the_relay_wants_the_supervisor_secret(recorder_behind_relay, caplog):
    _, port = recorder_behind_relay
    caplog.set_level(logging.WARNING, "platform_core.supervisor.ppp_relay")
    for secret in ("", "wrong"):
        async with through(port, "worker-1", secret) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ppp_grpc.PluginWorkerStub(channel).Init(ppp_pb2.InitRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caplog.text.count("missing or wrong supervisor secret") == 2


async def test_a_cancelled_caller_cancels_the_workers_call(recorder_behind_relay):
    recorder, port = recorder_behind_relay
    async with through(port, "worker-1", "s3cret") as channel:
        call = ppp_grpc.PluginWorkerStub(channel).Invoke(ppp_pb2.InvokeRequest())
        await call.read()  # the first progress message: the worker is inside its call
        call.cancel()
        await asyncio.wait_for(recorder.cancelled.wait(), timeout=5)


async def test_a_method_the_relay_does_not_know_is_relayed_too(recorder_behind_relay):
    _, port = recorder_behind_relay
    async with through(port, "worker-1", "s3cret") as channel:
        call = channel.stream_stream("/ppp.v1.PluginWorker/Echo")(timeout=5)
        await call.write(b"abc")
        assert await call.read() == b"cba"
        large = bytes(range(256)) * 12_000  # 3 MB: many HTTP/2 frames, many reads of the pipe
        await call.write(large)
        assert await call.read() == large[::-1]
        await call.write(b"xyz")
        await call.done_writing()
        assert await call.read() == b"zyx"
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
            await channel.unary_unary("/ppp.v1.PluginWorker/Nothing")(b"", timeout=5)
    assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_relay_answers_nothing_but_connect(recorder_behind_relay):
    _, port = recorder_behind_relay
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 405 ")
    writer.close()

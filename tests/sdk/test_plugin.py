"""The Python worker SDK: argument handling, failures, chunking, and a real server on a socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import grpc
import pytest
from plugins.divide_numbers import plugin as divide_plugin
from plugins.subtract_numbers import plugin as subtract_plugin
from ppp_sdk import Cancelled, InvocationContext, Plugin, PluginError
from ppp_sdk._gen import plugin_protocol_pb2 as pb
from ppp_sdk._gen import plugin_protocol_pb2_grpc as pb_grpc
from ppp_sdk.plugin import Context, require_number
from ppp_sdk.server import CHUNK_BYTES, PluginServicer

from platform_core.registry.builtin import BUILTIN_PLUGINS
from platform_core.registry.schemas import schema_errors


def _ctx(events: list) -> InvocationContext:
    return InvocationContext(Context(), lambda kind, payload: events.append((kind, payload)))


def test_subtract_reports_progress_then_result():
    events: list = []
    output = subtract_plugin.run(b'{"operand1": 10, "operand2": 5}', _ctx(events))
    assert json.loads(output) == {"result": 5.0, "operation": "subtract", "operand1": 10.0, "operand2": 5.0}
    assert ("progress", (50.0, "Performing...")) in events


@pytest.mark.parametrize(
    ("arguments", "code", "fragment"),
    [
        (b"{oops", "invalid_input", "not valid JSON"),
        (b"[1]", "invalid_input", "JSON object"),
        (b'{"operand1": 1}', "invalid_input", "'operand2' must be a number"),
        (b'{"operand1": "1", "operand2": 2}', "invalid_input", "'operand1' must be a number"),
        (b'{"operand1": true, "operand2": 2}', "invalid_input", "'operand1' must be a number"),
        (b'{"operand1": 1, "operand2": 0}', "division_by_zero", "by zero"),
    ],
)
def test_bad_arguments_raise_plugin_errors_naming_the_cause(arguments, code, fragment):
    with pytest.raises(PluginError) as caught:
        divide_plugin.run(arguments, _ctx([]))
    assert caught.value.code == code
    assert fragment in caught.value.message


def test_require_number_rejects_non_finite():
    with pytest.raises(PluginError):
        require_number({"x": float("inf")}, "x")


def test_progress_is_clamped_and_must_be_finite():
    events: list = []
    ctx = _ctx(events)
    ctx.progress(150, "over")
    ctx.progress(-5)
    assert [payload[0] for _, payload in events] == [100.0, 0.0]
    with pytest.raises(ValueError):
        ctx.progress(float("nan"))


def test_unencodable_result_is_an_invalid_output_error():
    plugin = Plugin(primitive="bad")
    plugin.handler(lambda args, ctx: {"value": object()})
    with pytest.raises(PluginError) as caught:
        plugin.run(b"{}", _ctx([]))
    assert caught.value.code == "invalid_output"


def test_arithmetic_results_match_the_registry_schemas():
    # The registry holds the schemas (the worker does not repeat them): its results must fit them.
    registry = {spec["name"]: spec for spec in BUILTIN_PLUGINS}
    for plugin in (subtract_plugin, divide_plugin):
        arguments = {"operand1": 7, "operand2": 2}
        assert schema_errors(registry[plugin.primitive]["input_schema"], arguments) == []
        result = json.loads(plugin.run(json.dumps(arguments).encode(), _ctx([])))
        assert schema_errors(registry[plugin.primitive]["output_schema"], result) == []


def _echo_plugin(**options) -> Plugin:
    echo_plugin = Plugin(primitive="echo", **options)

    @echo_plugin.handler
    def echo(args, ctx):
        if args.get("crash"):
            raise RuntimeError("boom")
        ctx.log("echoing")
        return {"payload": "x" * args.get("size", 1)}

    return echo_plugin


class _AioServer:
    """A real grpc.aio PPP server (the SDK's servicer) on a Unix socket, on a loop in a thread."""

    def __init__(self, plugin: Plugin, path: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servicer = PluginServicer(plugin)
        self.server = asyncio.run_coroutine_threadsafe(self._start(f"unix:{path}"), self.loop).result(10)

    async def _start(self, target: str) -> grpc.aio.Server:
        server = grpc.aio.server()
        pb_grpc.add_PluginWorkerServicer_to_server(self.servicer, server)
        server.add_insecure_port(target)
        await server.start()
        return server

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(grace=None), self.loop).result(10)
        self.servicer.handlers.shutdown(wait=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(params=["pool", "inline"])
def served(request, tmp_path_factory):
    """A real PPP gRPC server for a test plugin on a Unix socket; its handler in the thread pool
    or on the event loop (``inline=True``)."""
    path = str(tmp_path_factory.mktemp("s") / "w.sock")
    server = _AioServer(_echo_plugin(inline=request.param == "inline"), path)
    channel = grpc.insecure_channel(f"unix:{path}", options=[("grpc.max_receive_message_length", 64 << 20)])
    yield pb_grpc.PluginWorkerStub(channel)
    channel.close()
    server.close()


def test_server_streams_large_results_in_chunks(served):
    size = 3 * CHUNK_BYTES + 10
    messages = list(served.Invoke(pb.InvokeRequest(primitive="echo", arguments=json.dumps({"size": size}).encode())))
    kinds = [m.WhichOneof("kind") for m in messages]
    assert kinds == ["log", "result_chunk", "result_chunk", "result_chunk", "result_chunk", "completed"]
    data = b"".join(m.result_chunk.data for m in messages if m.WhichOneof("kind") == "result_chunk")
    assert len(json.loads(data)["payload"]) == size


def test_a_plugin_bug_is_a_failed_message_and_the_worker_stays_up(served):
    messages = list(served.Invoke(pb.InvokeRequest(primitive="echo", arguments=b'{"crash": true}')))
    assert [m.WhichOneof("kind") for m in messages] == ["failed"]
    assert messages[0].failed.code == "internal" and "boom" in messages[0].failed.message
    assert served.Health(pb.HealthRequest()).status == pb.HealthResponse.SERVING


def test_wrong_primitive_is_refused(served):
    messages = list(served.Invoke(pb.InvokeRequest(primitive="other", arguments=b"{}")))
    assert messages[0].failed.code == "unknown_primitive"


def test_concurrent_invocations_do_not_mix_their_streams(served):
    results: dict[int, int] = {}

    def call(size: int) -> None:
        messages = list(
            served.Invoke(pb.InvokeRequest(primitive="echo", arguments=json.dumps({"size": size}).encode()))
        )
        results[size] = len(json.loads(messages[-1].completed.output)["payload"])

    threads = [threading.Thread(target=call, args=(n,)) for n in (1, 10, 100, 1000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {1: 1, 10: 10, 100: 100, 1000: 1000}


def _kinds(stub, arguments: dict, primitive: str = "p") -> list[str]:
    return [
        m.WhichOneof("kind")
        for m in stub.Invoke(pb.InvokeRequest(primitive=primitive, arguments=json.dumps(arguments).encode()))
    ]


def test_async_handlers_run_on_the_loop_and_stream_progress(tmp_path):
    plugin = Plugin(primitive="p")

    @plugin.handler
    async def wait_a_little(args, ctx):
        ctx.progress(50, "half way")
        await asyncio.sleep(0.01)
        if args.get("fail"):
            raise PluginError("asked to fail", code="asked")
        return {"ok": True}

    assert plugin.is_async
    server = _AioServer(plugin, str(tmp_path / "a.sock"))
    try:
        with grpc.insecure_channel(f"unix:{tmp_path / 'a.sock'}") as channel:
            stub = pb_grpc.PluginWorkerStub(channel)
            assert _kinds(stub, {}) == ["progress", "completed"]
            failed = list(stub.Invoke(pb.InvokeRequest(primitive="p", arguments=b'{"fail": true}')))[-1].failed
            assert (failed.code, failed.message) == ("asked", "asked to fail")
    finally:
        server.close()


def test_a_blocking_handler_does_not_hold_up_the_other_calls(tmp_path):
    """Handlers not declared inline run in the pool: one that blocks leaves the loop (and Health,
    and the other calls) free."""
    plugin = Plugin(primitive="p")
    release = threading.Event()

    @plugin.handler
    def block(args, ctx):
        if args.get("block"):
            release.wait(10)
        return {}

    server = _AioServer(plugin, str(tmp_path / "b.sock"))
    try:
        with grpc.insecure_channel(f"unix:{tmp_path / 'b.sock'}") as channel:
            stub = pb_grpc.PluginWorkerStub(channel)
            stream = stub.Invoke(pb.InvokeRequest(primitive="p", arguments=b'{"block": true}'))
            started = time.monotonic()
            assert _kinds(stub, {}) == ["completed"]
            assert stub.Health(pb.HealthRequest(), timeout=5).status == pb.HealthResponse.SERVING
            assert time.monotonic() - started < 5
            release.set()
            assert [m.WhichOneof("kind") for m in stream] == ["completed"]
    finally:
        release.set()
        server.close()


def test_a_cancelled_invoke_stream_stops_the_handler(tmp_path):
    """PPP cancellation: the caller cancels its Invoke stream; the handler is told (ctx.cancelled,
    and Cancelled at its next progress report) and its thread is free again."""
    plugin = Plugin(primitive="p")
    stopped = threading.Event()
    steps: list[int] = []

    @plugin.handler
    def count(args, ctx):
        try:
            for step in range(1000):
                steps.append(step)
                ctx.progress(step / 10, f"step {step}")
                time.sleep(0.01)
        finally:
            stopped.set()
        return {}

    server = _AioServer(plugin, str(tmp_path / "c.sock"))
    try:
        with grpc.insecure_channel(f"unix:{tmp_path / 'c.sock'}") as channel:
            stub = pb_grpc.PluginWorkerStub(channel)
            stream = stub.Invoke(pb.InvokeRequest(primitive="p", arguments=b"{}"))
            assert next(stream).WhichOneof("kind") == "progress"
            stream.cancel()
            assert stopped.wait(5), "the handler went on after its caller cancelled"
            assert len(steps) < 1000
            # The worker serves the next call.
            assert stub.Health(pb.HealthRequest(), timeout=5).status == pb.HealthResponse.SERVING
    finally:
        server.close()


def test_cancelled_context_raises_at_progress():
    cancelled = threading.Event()
    ctx = InvocationContext(Context(), lambda kind, payload: None, cancelled)
    ctx.progress(1)
    assert not ctx.cancelled
    cancelled.set()
    assert ctx.cancelled
    with pytest.raises(Cancelled):
        ctx.progress(2)


def test_cancelling_the_task_reading_an_aio_invoke_stream_cancels_it_on_the_worker(tmp_path):
    """What the gateway does to cancel (``cancellation``): it cancels the task that reads the
    grpc.aio Invoke stream; the worker's handler is told and stops."""
    plugin = Plugin(primitive="p")
    stopped = threading.Event()

    @plugin.handler
    def count(args, ctx):
        try:
            while True:
                ctx.progress(1, "still going")
                time.sleep(0.01)
        finally:
            stopped.set()

    server = _AioServer(plugin, str(tmp_path / "d.sock"))

    async def read_then_cancel() -> None:
        async with grpc.aio.insecure_channel(f"unix:{tmp_path / 'd.sock'}") as channel:
            stub = pb_grpc.PluginWorkerStub(channel)
            first = asyncio.Event()

            async def read() -> None:
                async for _ in stub.Invoke(pb.InvokeRequest(primitive="p", arguments=b"{}")):
                    first.set()

            reader = asyncio.ensure_future(read())
            await asyncio.wait_for(first.wait(), 5)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    try:
        asyncio.run(read_then_cancel())
        assert stopped.wait(5), "the handler went on after the gateway cancelled its stream"
    finally:
        server.close()

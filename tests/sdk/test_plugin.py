"""The Python worker SDK: argument handling, failures, chunking, and a real server on a socket."""

from __future__ import annotations

import json
import threading

import grpc
import pytest
from plugins.divide_numbers import plugin as divide_plugin
from plugins.subtract_numbers import plugin as subtract_plugin
from ppp_sdk import InvocationContext, Plugin, PluginError
from ppp_sdk._gen import plugin_protocol_pb2 as pb
from ppp_sdk._gen import plugin_protocol_pb2_grpc as pb_grpc
from ppp_sdk.plugin import Context, require_number
from ppp_sdk.server import CHUNK_BYTES, PluginServicer

from platform_core.registry.builtin import BUILTIN_PLUGINS


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


def test_registry_and_worker_declare_the_same_schemas():
    registry = {spec["name"]: spec for spec in BUILTIN_PLUGINS}
    for plugin in (subtract_plugin, divide_plugin):
        assert registry[plugin.primitive]["input_schema"] == plugin.input_schema
        assert registry[plugin.primitive]["output_schema"] == plugin.output_schema


@pytest.fixture
def served(tmp_path_factory):
    """A real PPP gRPC server for a test plugin on a Unix socket."""
    big = Plugin(primitive="echo")

    @big.handler
    def echo(args, ctx):
        if args.get("crash"):
            raise RuntimeError("boom")
        ctx.log("echoing")
        return {"payload": "x" * args.get("size", 1)}

    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_PluginWorkerServicer_to_server(PluginServicer(big), server)
    path = tmp_path_factory.mktemp("s") / "w.sock"
    server.add_insecure_port(f"unix:{path}")
    server.start()
    channel = grpc.insecure_channel(f"unix:{path}", options=[("grpc.max_receive_message_length", 64 << 20)])
    yield pb_grpc.PluginWorkerStub(channel)
    channel.close()
    server.stop(grace=None)


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

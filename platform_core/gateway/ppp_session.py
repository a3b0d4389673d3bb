"""The gateway's side of the Platform-Plugin Protocol: one session with one worker.

connect (with a deadline and retries) → Init (once per channel for pooled workers) → Invoke,
whose stream of Progress / Log / ResultChunk messages ends with Completed or Failed → the
output, parsed and validated against the plugin's output schema. Every step is a trace event;
every failure is a ``GatewayError`` that says whether the worker is to blame.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
from django.conf import settings

from platform_core.gateway import errors
from platform_core.gateway.worker_route import Channel, WorkerRoute, worker_channels
from platform_core.invocations.documents import NotJson, loads_strict
from platform_core.invocations.trace import Trace, TraceEvent
from platform_core.invocations.vocabulary import EventKind as K
from platform_core.registry.models import PluginSpec
from platform_core.registry.schemas import schema_errors
from platform_core.rpc import ppp_grpc, ppp_pb2
from platform_core.tenancy.callers import Caller

_LOG_LEVEL_NAMES = {v: k.lower() for k, v in ppp_pb2.Log.Level.items()}
# PPP Failed codes that mean "your input", answered 400 like the gateway's own validation.
_INPUT_CODES = {"invalid_input", "invalid_argument"}
# PPP Failed code of the Python SDK for a MemoryError (a worker at its address-space rlimit).
OUT_OF_MEMORY = "out_of_memory"


class WorkerLog:
    """PPP Log messages and worker output, bounded by MAX_LOG_BYTES."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.limit, self.size, self.truncated = limit, 0, False

    def add(self, text: str) -> None:
        if self.size + len(text) > self.limit:
            text, self.truncated = text[: max(self.limit - self.size, 0)], True
        self.parts.append(text)
        self.size += len(text)

    def text(self) -> str:
        return "".join(self.parts)


async def session_run(
    *,
    route: WorkerRoute,
    plugin: PluginSpec,
    arguments: Any,
    caller: Caller,
    trace: Trace,
    worker_log: WorkerLog,
    connect_deadline: float,
) -> Any:
    """Connect along ``route`` (the worker's socket, or its supervisor's relay), Init (unless this
    channel already did), Invoke; the validated output document.

    ``connect_deadline`` (``time.monotonic()``) bounds the connection: a worker that cannot be
    reached by then is ``WorkerUnreachable`` (nothing ran), not lost.
    """
    found = worker_channels.get(route)
    await _connect(found, route, trace, connect_deadline)
    try:
        async with asyncio.timeout(plugin.timeout_s):
            if found.initialized:
                # A pooled worker is initialized once per channel; each Invoke carries its own context.
                trace.add(K.INIT_CACHED, "Init skipped: worker session already initialized")
            else:
                opened = trace.add(K.INIT_REQUEST, "gRPC Init(ctx)")
                init = await found.stub.Init(ppp_pb2.InitRequest(context=_context(caller, trace, opened)))
                trace.add(K.INIT_RESPONSE, f"InitResponse(ok={init.ok}, {init.message!r})")
                if not init.ok:
                    raise errors.PluginFailed(f"worker refused Init: {init.message}", code="init_failed")
                found.initialized = True
            encoded = json.dumps(arguments).encode()
            opened = trace.add(
                K.INVOKE_REQUEST, f"gRPC Invoke({plugin.name}, {len(encoded)} bytes, {caller.request_id})"
            )
            request = ppp_pb2.InvokeRequest(
                primitive=plugin.ppp_primitive,
                arguments=encoded,
                request_id=caller.request_id,
                context=_context(caller, trace, opened),
            )
            return await _invoke(found.stub, request, plugin, trace, worker_log)
    except TimeoutError:
        trace.add(K.TIMEOUT, f"no result after {plugin.timeout_s:g} s")
        raise errors.InvocationTimeout(f"{plugin.name} did not finish within {plugin.timeout_s:g} s") from None
    except grpc.aio.AioRpcError as exc:
        if _never_connected(exc):
            # The call never reached the worker (its connection could not be made): nothing ran.
            trace.add(K.CONNECT_RETRY, f"{exc.code().name}: {exc.details()}")
            raise errors.WorkerUnreachable(
                f"worker {route.worker_id} could not be connected to ({exc.details()}); nothing ran: retry"
            ) from None
        trace.add(K.WORKER_LOST, f"{exc.code().name}: {exc.details()}")
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:  # one message over the channel's 16 MiB limit
            raise errors.InvalidOutput(f"the worker sent a message larger than gRPC allows ({exc.details()})") from None
        raise errors.WorkerLost(
            f"connection to worker {route.worker_id} lost: {exc.code().name.lower()} ({exc.details()})"
        ) from None
    finally:
        trace.add(K.CHANNEL_CLOSE, "Done with channel (closed once the worker is removed)")


def _context(caller: Caller, trace: Trace, opened: TraceEvent) -> ppp_pb2.Context:
    """The PPP context of a call made at ``opened``: who asks, and the span it belongs to."""
    return ppp_pb2.Context(
        tenant_id=caller.tenant_id,
        user_id=caller.user_id,
        session_id=caller.session_id,
        request_id=caller.request_id,
        traceparent=trace.traceparent(opened),
        tracestate=trace.tracestate,
    )


def _never_connected(exc: grpc.aio.AioRpcError) -> bool:
    """gRPC failed the call while connecting (so it never sent it), rather than losing it midway."""
    return exc.code() == grpc.StatusCode.UNAVAILABLE and "failed to connect" in (exc.details() or "")


async def _connect(found: Channel, route: WorkerRoute, trace: Trace, deadline: float) -> None:
    """Wait until the channel is connected; grpc retries the connection meanwhile (backoff
    10-200 ms, each attempt bounded by FAST_CHANNEL_OPTIONS' connect timeout)."""
    state = found.channel.get_state(try_to_connect=True)
    if state == grpc.ChannelConnectivity.READY:
        trace.add(K.CHANNEL_OPEN, f"Reuse channel: {route.description}")
        return
    trace.add(K.CHANNEL_OPEN, f"Create channel: {route.description}")
    started = time.monotonic()
    try:
        async with asyncio.timeout(max(deadline - started, 0.05)):
            await found.channel.channel_ready()
    except TimeoutError:
        waited = time.monotonic() - started
        trace.add(K.CONNECT_RETRY, f"not connected after {waited * 1000:.0f} ms (last state {state.name})")
        raise errors.WorkerUnreachable(
            f"worker {route.worker_id} was ready but could not be reached within {waited:.1f} s "
            "(the machine is overloaded?); nothing ran: retry"
        ) from None


async def _invoke(
    stub: ppp_grpc.PluginWorkerStub,
    request: ppp_pb2.InvokeRequest,
    plugin: PluginSpec,
    trace: Trace,
    worker_log: WorkerLog,
) -> Any:
    chunks: list[bytes] = []
    size = 0
    async for message in stub.Invoke(request):
        kind = message.WhichOneof("kind")
        if kind == "progress":
            progress = message.progress
            trace.add(
                K.PROGRESS,
                f"Progress({progress.percent:g}%, {progress.message!r})",
                data={"percent": progress.percent, "message": progress.message},
            )
        elif kind == "log":
            level = _LOG_LEVEL_NAMES.get(message.log.level, "info")
            worker_log.add(f"[{level}] {message.log.message}\n")
            trace.add(K.LOG, f"Log: {message.log.message}")
        elif kind == "result_chunk":
            size += len(message.result_chunk.data)
            if size > settings.PLATFORM_MAX_RESULT_BYTES:
                raise _result_too_large()
            chunks.append(message.result_chunk.data)
        elif kind == "completed":
            output = b"".join(chunks) + message.completed.output
            trace.add(K.COMPLETED, f"Completed({len(output)} bytes)")
            return _validated_output(plugin, output, trace)
        elif kind == "failed":
            failed = message.failed
            trace.add(K.FAILED, f"Failed({failed.code}, {failed.message!r})")
            if failed.code in _INPUT_CODES:
                raise errors.PluginRejectedInput(failed.message or "the plugin rejected its input")
            raise errors.PluginFailed(failed.message or "the plugin failed", code=failed.code or "plugin_failed")
    trace.add(K.WORKER_LOST, "stream ended without Completed or Failed")
    raise errors.WorkerLost("the worker ended its stream without a result")


def _result_too_large() -> errors.InvalidOutput:
    limit = settings.PLATFORM_MAX_RESULT_BYTES
    return errors.InvalidOutput(f"the plugin's result is larger than {limit} bytes (MAX_RESULT_BYTES); it was dropped")


def _validated_output(plugin: PluginSpec, output: bytes, trace: Trace) -> Any:
    if len(output) > settings.PLATFORM_MAX_RESULT_BYTES:
        raise _result_too_large()
    try:
        document = loads_strict(output)
    except (NotJson, RecursionError) as exc:
        raise errors.InvalidOutput(f"the plugin's result is not JSON: {exc}") from None
    if problems := schema_errors(plugin.output_validator, document):
        trace.add(K.VALIDATE_OUTPUT, f"invalid: {problems[0]['message']}")
        raise errors.InvalidOutput(
            f"the plugin's result does not match its output schema: {problems[0]['path']}: {problems[0]['message']}",
            details=problems,
        )
    trace.add(K.VALIDATE_OUTPUT, "Parse JSON output, validate output schema")
    return document

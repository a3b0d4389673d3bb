"""Run one plugin invocation end to end, as in the seed's sequence diagrams.

request → registry lookup → input validation → allocation (supervisor) → PPP Init →
streamed Invoke (progress, logs, chunks, Completed/Failed) → output validation → release
(always; CancelAllocation on timeout) → record (invocation + trace) → response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from django.conf import settings

from platform_core.gateway import errors, instance
from platform_core.gateway.runtime_client import ReleaseReport, WorkerLease, worker_allocate, worker_release
from platform_core.gateway.schemas import schema_errors
from platform_core.gateway.worker_route import lease_route, worker_channels
from platform_core.invocations.models import Participant as P
from platform_core.invocations.models import Status
from platform_core.invocations.services import Caller, Finish, invocation_finish, invocation_start
from platform_core.invocations.trace import Trace
from platform_core.registry.selectors import plugin_get
from platform_core.rpc import ppp_grpc, ppp_pb2

log = logging.getLogger(__name__)

_LOG_LEVEL_NAMES = {v: k.lower() for k, v in ppp_pb2.Log.Level.items()}


@dataclass
class Outcome:
    """What the API answers: status, JSON body, extra headers."""

    invocation_id: str
    http_status: int
    result: Any = None
    error: errors.GatewayError | None = None
    worker_id: str = ""
    timings_ms: dict[str, float | None] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        if self.error is not None and self.error.retry_after is not None:
            return {"Retry-After": str(self.error.retry_after)}
        return {}


class _WorkerLog:
    """PPP Log messages and worker output, bounded by MAX_LOG_BYTES."""

    def __init__(self, limit: int) -> None:
        self.limit, self.parts, self.size, self.truncated = limit, [], 0, False

    def add(self, text: str) -> None:
        if self.size + len(text) > self.limit:
            text, self.truncated = text[: max(self.limit - self.size, 0)], True
        self.parts.append(text)
        self.size += len(text)

    def text(self) -> str:
        return "".join(self.parts)


def _parse_arguments(body: bytes) -> Any:
    if not body.strip():
        raise errors.InvalidInput("request body is empty; send a JSON object")
    limit = settings.PLATFORM_MAX_JSON_DEPTH
    too_deep = errors.InvalidInput(f"request body is nested deeper than {limit} levels (API_MAX_JSON_DEPTH)")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.InvalidInput(f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # deeper than the parser's own recursion limit (~1000)
        raise too_deep from None
    # Fewer brackets than the limit cannot nest deeper than it: most bodies skip the walk.
    if body.count(b"[") + body.count(b"{") > limit and json_depth(document, limit) > limit:
        raise too_deep
    return document


def json_depth(document: Any, limit: int) -> int:
    """How deep arrays and objects nest in ``document`` (a scalar: 0), counted up to ``limit`` + 1.

    Iterative, so that a document nested deeper than Python's recursion limit cannot break it.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        depth += 1
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        stack.extend((item, depth) for item in value)
    return deepest


async def invocation_execute(*, name: str, body: bytes, caller: Caller, request_line: str) -> Outcome:
    """Run plugin ``name`` (primitive name or operation alias) on the JSON ``body``."""
    invocation_id = str(uuid.uuid4())
    trace = Trace(
        invocation_id,
        context={"tenant_id": caller.tenant_id, "session_id": caller.session_id, "request_id": caller.request_id},
    )
    worker_log = _WorkerLog(settings.PLATFORM_MAX_LOG_BYTES)
    finish = Finish(status=Status.ERROR, http_status=500, plugin_name=name)
    outcome = Outcome(invocation_id, 500)
    lease: WorkerLease | None = None
    started: asyncio.Future | None = None
    try:
        trace.add(P.CLIENT, P.GATEWAY, "request", 1, request_line)
        trace.add(P.GATEWAY, P.REGISTRY, "lookup", 2, f'getPlugin("{name}")')
        plugin = await plugin_get(name=name)
        if plugin is None:
            trace.add(P.REGISTRY, P.GATEWAY, "lookup_result", 2, "not found")
            raise errors.UnknownPlugin(f"no enabled plugin or operation is called {name!r}; see GET /api/v1/plugins")
        finish.plugin, finish.plugin_name = plugin, plugin.name
        trace.add(
            P.REGISTRY,
            P.GATEWAY,
            "lookup_result",
            2,
            f"PluginSpec({plugin.runtime}, {plugin.entrypoint}, {plugin.mode})",
        )
        arguments = finish.arguments = _parse_arguments(body)
        if problems := schema_errors(plugin.input_validator, arguments):
            trace.add(P.GATEWAY, P.GATEWAY, "validate_input", 2, f"invalid: {problems[0]['message']}")
            raise errors.InvalidInput(
                f"arguments do not match the input schema of {plugin.name}: "
                f"{problems[0]['path']}: {problems[0]['message']}",
                details=problems,
            )
        trace.add(
            P.GATEWAY,
            P.GATEWAY,
            "validate_input",
            2,
            f"Build PluginRef & Context (tenant {caller.tenant_id}, user {caller.user_id}, "
            f"request {caller.request_id})",
        )
        # Written while the worker is allocated; awaited before the final write.
        started = asyncio.ensure_future(
            invocation_start(
                invocation_id=invocation_id,
                plugin=plugin,
                caller=caller,
                arguments=arguments,
                gateway_instance=instance.INSTANCE_ID,
            )
        )
        trace.publish_state({"status": Status.RUNNING, "plugin": plugin.name})

        lease = await worker_allocate(
            plugin=plugin, caller=caller, trace=trace, timeout_s=settings.PLATFORM_ALLOCATION_TIMEOUT_S
        )
        finish.worker_id, finish.worker_warm, finish.backend = lease.worker_id, lease.warm, lease.backend
        report = ReleaseReport()
        try:
            output = await _ppp_session(lease, plugin, arguments, caller, trace, worker_log)
        except errors.InvocationTimeout:
            report = await worker_release(lease=lease, reason="timeout", trace=trace, force=True)
            raise
        except errors.GatewayError as exc:
            # A plugin that reported a failure is healthy; a lost, garbled or starved worker is not reused.
            suspect = isinstance(exc, errors.WorkerLost | errors.InvalidOutput) or exc.code == OUT_OF_MEMORY
            report = await worker_release(lease=lease, reason=exc.code, trace=trace, retire=suspect)
            raise _explained(exc, report, plugin) from None
        except BaseException:  # cancelled or a bug: the worker must not outlive the request
            report = await worker_release(lease=lease, reason="aborted", trace=trace, force=True)
            raise
        else:
            report = await worker_release(lease=lease, reason="execution_complete", trace=trace)
        finally:
            if report.removed:
                await worker_channels.forget(lease_route(lease))
            if report.output:
                worker_log.add(f"--- worker output (exit code {report.exit_code}) ---\n{report.output}")
            worker_log.truncated |= report.output_truncated
        finish.status, finish.http_status, finish.result = Status.SUCCEEDED, 200, output
        outcome.http_status, outcome.result = 200, output
    except errors.GatewayError as exc:
        finish.status, finish.http_status = exc.status, exc.http_status
        finish.error_code, finish.error_message = exc.code, exc.message
        outcome.http_status, outcome.error = exc.http_status, exc
    except Exception as exc:
        log.exception("invocation %s failed in the gateway", invocation_id)
        error = errors.GatewayError(f"internal error in the gateway: {type(exc).__name__}")
        finish.error_code, finish.error_message = error.code, f"{type(exc).__name__}: {exc}"
        outcome.error = error
    finally:
        outcome.worker_id = finish.worker_id
        trace.add(
            P.GATEWAY,
            P.CLIENT,
            "response",
            7,
            f"HTTP {outcome.http_status}" + (f" {outcome.error.code}" if outcome.error else ""),
        )
        finish.worker_log, finish.worker_log_truncated = worker_log.text(), worker_log.truncated
        try:
            if started is not None:
                await started
            outcome.timings_ms = await invocation_finish(
                invocation_id=invocation_id, caller=caller, finish=finish, events=trace.events
            )
        except Exception:
            # Nothing is acknowledged that is not stored (e.g. a database locked past its busy
            # timeout): the client is told, in the error contract's shape, not with a bare 500.
            log.exception("invocation %s could not be recorded", invocation_id)
            outcome.http_status, outcome.result = 500, None
            outcome.error = errors.GatewayError(
                "the invocation could not be recorded (database unavailable); its outcome is unknown",
                code="record_failed",
            )
        trace.publish_state(
            {
                "status": finish.status,
                "http_status": finish.http_status,
                "timings_ms": outcome.timings_ms,
                "result": finish.result,
                "error": outcome.error.body()["error"] if outcome.error else None,
            }
        )
        # Live viewers get the rest in the background; the response does not wait for them.
        trace.close_soon()
    return outcome


# PPP Failed code of the Python SDK for a MemoryError (a worker at its address-space rlimit).
OUT_OF_MEMORY = "out_of_memory"


def _explained(exc: errors.GatewayError, report: ReleaseReport, plugin) -> errors.GatewayError:
    """The error the client gets, once the supervisor has said how the worker ended.

    A lost worker says little by itself (its connection broke); the supervisor knows whether it
    was killed at its memory limit, ran out of CPU time, crashed, or went away with its
    supervisor. A plugin that ran out of memory (MemoryError) is named the same way.
    """
    memory = f"worker exceeded its memory limit ({plugin.memory_mb} MB)"
    if exc.code == OUT_OF_MEMORY or report.exit_cause == "memory_limit":
        return errors.MemoryLimitExceeded(f"{memory}: {exc.message}" if exc.code == OUT_OF_MEMORY else memory)
    if not isinstance(exc, errors.WorkerLost):
        return exc
    if report.exit_cause == "cpu_time_limit":
        return errors.CpuLimitExceeded(report.exit_detail)
    if report.exit_cause:
        return errors.WorkerLost(f"{exc.message}: {report.exit_detail}")
    if report.supervisor_lost:
        return errors.SupervisorUnavailable(
            f"{exc.message}; its {plugin.runtime} runtime supervisor went away too (the worker died with it): "
            "retry once it is back"
        )
    return exc


async def _ppp_session(
    lease: WorkerLease, plugin, arguments: Any, caller: Caller, trace: Trace, worker_log: _WorkerLog
) -> Any:
    """Init and Invoke on the worker; the validated output document."""
    context = ppp_pb2.Context(
        tenant_id=caller.tenant_id, user_id=caller.user_id, session_id=caller.session_id, request_id=caller.request_id
    )
    # Direct Unix socket on this host, else the owning supervisor's relay (worker_route).
    route = lease_route(lease)
    # Kept open after the call when the worker turns out to be pooled (it stays up).
    channel = worker_channels.get(route)
    trace.add(
        P.GATEWAY, P.GATEWAY, "channel_open", 4, f"{'Reuse' if lease.warm else 'Create'} channel: {route.description}"
    )
    try:
        async with asyncio.timeout(plugin.timeout_s):
            stub = ppp_grpc.PluginWorkerStub(channel)
            if worker_channels.initialized(route):
                # A pooled worker is initialized once per session; each Invoke carries its own context.
                trace.add(P.GATEWAY, P.GATEWAY, "init_cached", 4, "Init skipped: worker session already initialized")
            else:
                trace.add(P.GATEWAY, P.WORKER, "init_request", 4, "gRPC Init(ctx)")
                init = await stub.Init(ppp_pb2.InitRequest(context=context))
                trace.add(P.WORKER, P.GATEWAY, "init_response", 4, f"InitResponse(ok={init.ok}, {init.message!r})")
                if not init.ok:
                    raise errors.PluginFailed(f"worker refused Init: {init.message}", code="init_failed")
                worker_channels.mark_initialized(route)
            trace.add(
                P.GATEWAY,
                P.WORKER,
                "invoke_request",
                5,
                f"gRPC Invoke({plugin.name}, {len(json.dumps(arguments))} bytes, {caller.request_id})",
            )
            output = await _invoke_stream(stub, plugin, arguments, context, caller, trace, worker_log)
    except TimeoutError:
        trace.add(P.GATEWAY, P.GATEWAY, "timeout", 5, f"no result after {plugin.timeout_s:g} s")
        raise errors.InvocationTimeout(f"{plugin.name} did not finish within {plugin.timeout_s:g} s") from None
    except grpc.aio.AioRpcError as exc:
        trace.add(P.WORKER, P.GATEWAY, "worker_lost", 5, f"{exc.code().name}: {exc.details()}")
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:  # one message over the channel's 16 MiB limit
            raise errors.InvalidOutput(f"the worker sent a message larger than gRPC allows ({exc.details()})") from None
        raise errors.WorkerLost(
            f"connection to worker {lease.worker_id} lost: {exc.code().name.lower()} ({exc.details()})"
        ) from None
    finally:
        trace.add(P.GATEWAY, P.WORKER, "channel_close", 6, "Done with channel (closed once the worker is removed)")
    return output


async def _invoke_stream(stub, plugin, arguments, context, caller: Caller, trace: Trace, worker_log: _WorkerLog) -> Any:
    request = ppp_pb2.InvokeRequest(
        primitive=plugin.ppp_primitive,
        arguments=json.dumps(arguments).encode(),
        request_id=caller.request_id,
        context=context,
    )
    chunks: list[bytes] = []
    size = 0
    async for message in stub.Invoke(request):
        kind = message.WhichOneof("kind")
        if kind == "progress":
            progress = message.progress
            trace.add(
                P.WORKER,
                P.GATEWAY,
                "progress",
                5,
                f"Progress({progress.percent:g}%, {progress.message!r})",
                data={"percent": progress.percent, "message": progress.message},
            )
        elif kind == "log":
            level = _LOG_LEVEL_NAMES.get(message.log.level, "info")
            worker_log.add(f"[{level}] {message.log.message}\n")
            trace.add(P.WORKER, P.WORKER, "log", 5, f"Log: {message.log.message}")
        elif kind == "result_chunk":
            size += len(message.result_chunk.data)
            if size > settings.PLATFORM_MAX_RESULT_BYTES:
                raise _result_too_large()
            chunks.append(message.result_chunk.data)
        elif kind == "completed":
            output_bytes = b"".join(chunks) + message.completed.output
            trace.add(P.WORKER, P.GATEWAY, "completed", 5, f"Completed({len(output_bytes)} bytes)")
            return _validated_output(plugin, output_bytes, trace)
        elif kind == "failed":
            failed = message.failed
            trace.add(P.WORKER, P.GATEWAY, "failed", 5, f"Failed({failed.code}, {failed.message!r})")
            if failed.code in {"invalid_input", "invalid_argument"}:
                raise errors.PluginRejectedInput(failed.message or "the plugin rejected its input")
            raise errors.PluginFailed(failed.message or "the plugin failed", code=failed.code or "plugin_failed")
    trace.add(P.WORKER, P.GATEWAY, "worker_lost", 5, "stream ended without Completed or Failed")
    raise errors.WorkerLost("the worker ended its stream without a result")


def _result_too_large() -> errors.InvalidOutput:
    limit = settings.PLATFORM_MAX_RESULT_BYTES
    return errors.InvalidOutput(f"the plugin's result is larger than {limit} bytes (MAX_RESULT_BYTES); it was dropped")


def _validated_output(plugin, output_bytes: bytes, trace: Trace) -> Any:
    if len(output_bytes) > settings.PLATFORM_MAX_RESULT_BYTES:
        raise _result_too_large()
    try:
        output = json.loads(output_bytes)
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.InvalidOutput(f"the plugin's result is not JSON: {exc}") from None
    if problems := schema_errors(plugin.output_validator, output):
        trace.add(P.GATEWAY, P.GATEWAY, "validate_output", 5, f"invalid: {problems[0]['message']}")
        raise errors.InvalidOutput(
            f"the plugin's result does not match its output schema: {problems[0]['path']}: {problems[0]['message']}",
            details=problems,
        )
    trace.add(P.GATEWAY, P.GATEWAY, "validate_output", 5, "Parse JSON output, validate output schema")
    return output

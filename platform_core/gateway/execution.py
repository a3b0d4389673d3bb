"""One plugin invocation, phase by phase, as the seed draws it.

1. request  2. lookup and input validation  3. allocation  4. PPP session  5. execution
6. cleanup (always; CancelAllocation on timeout)  7. response (recorded with its trace)

Each phase is a method of ``_Run``, which holds what the phases share (the trace, the worker's
log, the final state). Callers do not use this module directly: ``service.invocation_submit``
admits, runs (here) and shapes every invocation, whoever asks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from platform_core.gateway import cancellation, errors, instance, leases
from platform_core.gateway.ppp_session import OUT_OF_MEMORY, WorkerLog, session_run
from platform_core.gateway.runtime_client import ReleaseReport, WorkerLease
from platform_core.gateway.worker_route import lease_route, worker_channels
from platform_core.invocations.documents import NotJson, loads_strict
from platform_core.invocations.models import Status
from platform_core.invocations.services import Finish, invocation_finish, invocation_start
from platform_core.invocations.trace import Trace
from platform_core.invocations.vocabulary import EventKind as K
from platform_core.observability.invocations import invocation_begin, invocation_end
from platform_core.registry.models import PluginSpec
from platform_core.registry.schemas import schema_errors
from platform_core.registry.selectors import plugin_get
from platform_core.tenancy.callers import Caller

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """An invocation's end, as every edge shapes its answer from it."""

    invocation_id: str
    http_status: int
    result: Any = None
    error: errors.GatewayError | None = None
    worker_id: str = ""
    timings_ms: dict[str, float | None] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return self.error.headers if self.error is not None else {}


def arguments_parse(body: bytes) -> Any:
    """The request body as a JSON document: strict JSON, nested at most API_MAX_JSON_DEPTH deep."""
    if not body.strip():
        raise errors.InvalidInput("request body is empty; send a JSON object")
    limit = settings.PLATFORM_MAX_JSON_DEPTH
    too_deep = errors.InvalidInput(f"request body is nested deeper than {limit} levels (API_MAX_JSON_DEPTH)")
    try:
        document = loads_strict(body)
    except NotJson as exc:
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


async def invocation_execute(
    *,
    invocation_id: str,
    name: str,
    body: bytes,
    caller: Caller,
    request_line: str,
    listener: Callable[[dict[str, Any]], None] | None = None,
) -> Outcome:
    """Run plugin ``name`` (primitive name or operation alias) on the JSON ``body``; recorded.

    ``listener`` gets every trace item as it happens (SSE, MCP progress). Cancellable on
    request (``cancellation``): it then ends ``cancelled``, its worker stopped.
    """
    run = _Run(invocation_id, name, caller)
    if listener is not None:
        run.trace.listeners.append(listener)
    cancellation.track(invocation_id)
    run.request(request_line)  # 1
    try:
        plugin = await run.lookup(name)  # 2
        arguments = run.validate_input(plugin, body)  # 2
        output = await run.on_worker(plugin, arguments)  # 3, 4, 5, 6
        run.finish.status, run.finish.http_status, run.finish.result = Status.SUCCEEDED, 200, output
        run.outcome.http_status, run.outcome.result = 200, output
    except errors.GatewayError as exc:
        run.failed(exc)
    except Exception as exc:
        log.exception("invocation %s failed in the gateway", invocation_id)
        error = errors.GatewayError(f"internal error in the gateway: {type(exc).__name__}")
        run.failed(error, recorded_message=f"{type(exc).__name__}: {exc}")
    except asyncio.CancelledError:
        if not cancellation.requested(invocation_id):
            cancellation.untrack(invocation_id)
            raise
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        run.trace.add(K.INVOCATION_CANCELLED, "cancelled on request (POST /api/v1/invocations/{id}/cancel)")
        run.failed(errors.Cancelled("the invocation was cancelled on request"))
    cancellation.untrack(invocation_id)
    return await run.respond()  # 7


async def invocation_refuse(
    *, invocation_id: str, name: str, caller: Caller, request_line: str, error: errors.GatewayError
) -> Outcome:
    """Record and answer an invocation refused before it ran (quota, body too large)."""
    run = _Run(invocation_id, name, caller)
    run.request(request_line)
    run.trace.add(K.REFUSED, f"{error.code}: {error.message}")
    run.failed(error)
    return await run.respond()


class _Run:
    def __init__(self, invocation_id: str, name: str, caller: Caller) -> None:
        self.caller = caller
        self.trace = Trace(
            invocation_id,
            context={"tenant_id": caller.tenant_id, "session_id": caller.session_id, "request_id": caller.request_id},
        )
        self.worker_log = WorkerLog(settings.PLATFORM_MAX_LOG_BYTES)
        self.finish = Finish(status=Status.ERROR, http_status=500, plugin_name=name)
        self.outcome = Outcome(invocation_id, 500)
        # The start record, written while the worker is allocated; awaited before the final write.
        self.started: asyncio.Future[Any] | None = None
        self.allocation_deadline = 0.0
        # The worker it ran on (the last, when a kept seat had to be replaced).
        self.lease: WorkerLease | None = None
        self.log = invocation_begin(invocation_id=invocation_id, caller=caller, trace=self.trace)

    @property
    def arrived(self) -> datetime:
        return datetime.fromtimestamp(self.trace.started_ns / 1e9, tz=UTC)

    # 1. request ----------------------------------------------------------------------------

    def request(self, request_line: str) -> None:
        self.trace.add(K.REQUEST, request_line)

    # 2. lookup and input validation --------------------------------------------------------

    async def lookup(self, name: str) -> PluginSpec:
        self.trace.add(K.LOOKUP, f'getPlugin("{name}")')
        plugin = await plugin_get(name=name)
        if plugin is None:
            self.trace.add(K.LOOKUP_RESULT, "not found")
            raise errors.UnknownPlugin(f"no enabled plugin or operation is called {name!r}; see GET /api/v1/plugins")
        self.finish.plugin, self.finish.plugin_name = plugin, plugin.name
        self.trace.add(K.LOOKUP_RESULT, f"PluginSpec({plugin.runtime_id}, {plugin.entrypoint}, {plugin.mode})")
        return plugin

    def validate_input(self, plugin: PluginSpec, body: bytes) -> Any:
        try:
            arguments = self.finish.arguments = arguments_parse(body)
        except errors.InvalidInput as exc:
            self.trace.add(K.VALIDATE_INPUT, f"invalid: {exc.message}")
            raise
        if problems := schema_errors(plugin.input_validator, arguments):
            self.trace.add(K.VALIDATE_INPUT, f"invalid: {problems[0]['message']}")
            raise errors.InvalidInput(
                f"arguments do not match the input schema of {plugin.name}: "
                f"{problems[0]['path']}: {problems[0]['message']}",
                details=problems,
            )
        caller = self.caller
        self.trace.add(
            K.VALIDATE_INPUT,
            f"Build PluginRef & Context (tenant {caller.tenant_id}, user {caller.user_id}, "
            f"request {caller.request_id})",
        )
        self.started = asyncio.ensure_future(
            invocation_start(
                invocation_id=self.outcome.invocation_id,
                plugin=plugin,
                caller=caller,
                arguments=arguments,
                gateway_instance=instance.INSTANCE_ID,
                at=self.arrived,
            )
        )
        self.trace.publish_state({"status": Status.RUNNING, "plugin": plugin.name})
        return arguments

    # 3-6. on a worker ----------------------------------------------------------------------

    async def on_worker(self, plugin: PluginSpec, arguments: Any) -> Any:
        """Get a worker (3): a seat this gateway keeps (pooled) or a new lease; run the PPP session
        on it (4, 5); give it back whatever happened (6). A kept seat whose worker cannot be
        reached any more (it died while kept) is retired and the invocation runs on another."""
        budget = settings.PLATFORM_ALLOCATION_TIMEOUT_S
        self.allocation_deadline = time.monotonic() + budget
        workers = leases.keeper()
        while True:
            held = await workers.acquire(plugin=plugin, caller=self.caller, trace=self.trace, timeout_s=budget)
            kept = held.uses > 0
            try:
                return await self._session(workers, held, plugin, arguments)
            except errors.WorkerUnreachable:
                if not kept or time.monotonic() >= self.allocation_deadline:
                    raise
                self.worker_log.parts.clear()

    async def _session(self, workers: leases.Keeper, held: leases.Held, plugin: PluginSpec, arguments: Any) -> Any:
        lease = self.lease = held.lease
        self.log.worker_id = lease.worker_id
        self.finish.worker_id, self.finish.worker_warm, self.finish.backend = (
            lease.worker_id,
            lease.warm or held.uses > 0,
            lease.backend,
        )
        report = ReleaseReport()

        async def give_back(reason: str, **how: bool) -> ReleaseReport:
            return await workers.release(held, plugin=plugin, reason=reason, trace=self.trace, **how)

        try:
            output = await session_run(
                route=held.route,
                plugin=plugin,
                arguments=arguments,
                caller=self.caller,
                trace=self.trace,
                worker_log=self.worker_log,
                connect_deadline=self.allocation_deadline,
            )
        except errors.InvocationTimeout:
            report = await give_back("timeout", force=True)
            raise
        except errors.WorkerUnreachable as exc:
            report = await give_back(exc.code, retire=True)
            raise  # the caller may try another worker: nothing ran on this one
        except errors.GatewayError as exc:
            # A plugin that reported a failure is healthy; a lost, garbled or starved worker is not reused.
            suspect = isinstance(exc, errors.WorkerLost | errors.InvalidOutput)
            report = await give_back(exc.code, retire=suspect or exc.code == OUT_OF_MEMORY)
            raise error_explained(exc, report, plugin) from None
        except BaseException:  # cancelled or a bug: the worker must not outlive the request
            if cancellation.requested(self.outcome.invocation_id):
                report = await cancellation.worker_release(give_back, grace_s=settings.PLATFORM_CANCEL_GRACE_S)
            else:
                report = await give_back("aborted", force=True)
            raise
        else:
            report = await give_back("execution_complete")
        finally:
            await self._after_release(lease, report)
        return output

    async def _after_release(self, lease: WorkerLease, report: ReleaseReport) -> None:
        if report.removed:
            await worker_channels.forget(lease_route(lease))
        if report.output:
            self.worker_log.add(f"--- worker output (exit code {report.exit_code}) ---\n{report.output}")
        self.worker_log.truncated |= report.output_truncated

    # 7. response ---------------------------------------------------------------------------

    def failed(self, exc: errors.GatewayError, *, recorded_message: str = "") -> None:
        """End with ``exc`` (``recorded_message``: what the history keeps, when it says more)."""
        self.finish.status, self.finish.http_status = exc.status, exc.http_status
        self.finish.error_code, self.finish.error_message = exc.code, recorded_message or exc.message
        self.outcome.http_status, self.outcome.error = exc.http_status, exc

    async def respond(self) -> Outcome:
        """Record the invocation with its whole trace; the outcome the caller is answered with."""
        outcome, finish = self.outcome, self.finish
        outcome.worker_id = finish.worker_id
        self.trace.add(K.RESPONSE, f"HTTP {outcome.http_status}" + (f" {outcome.error.code}" if outcome.error else ""))
        finish.worker_log, finish.worker_log_truncated = self.worker_log.text(), self.worker_log.truncated
        try:
            if self.started is not None:
                await self.started
            outcome.timings_ms = await invocation_finish(
                invocation_id=outcome.invocation_id,
                caller=self.caller,
                finish=finish,
                events=self.trace.events,
                at=self.arrived,
                gateway_instance=instance.INSTANCE_ID,
            )
        except Exception:
            # Nothing is acknowledged that is not stored (e.g. a database locked past its busy
            # timeout): the client is told, in the error contract's shape, not with a bare 500.
            log.exception("invocation %s could not be recorded", outcome.invocation_id)
            outcome.http_status, outcome.result = 500, None
            outcome.error = errors.RecordFailed(
                "the invocation could not be recorded (database unavailable); its outcome is unknown"
            )
        self.trace.publish_state(
            {
                "status": finish.status,
                "http_status": finish.http_status,
                "timings_ms": outcome.timings_ms,
                "result": finish.result,
                "error": outcome.error.body()["error"] if outcome.error else None,
            }
        )
        invocation_end(
            trace=self.trace,
            bound=self.log,
            caller=self.caller,
            plugin=finish.plugin,
            status=finish.status,
            http_status=outcome.http_status,
            timings_ms=outcome.timings_ms,
            error=outcome.error,
            lease=self.lease,
            warm=finish.worker_warm,
        )

        return outcome


def error_explained(exc: errors.GatewayError, report: ReleaseReport, plugin: PluginSpec) -> errors.GatewayError:
    """The error the client gets, once the supervisor has said how the worker ended.

    A lost worker says little by itself (its connection broke); the supervisor knows whether it
    was killed at its memory limit, ran out of CPU time, crashed, or went away with its
    supervisor. A plugin that ran out of memory (MemoryError) is named the same way.
    """
    memory = f"worker exceeded its memory limit ({plugin.memory_mb} MB)"
    if exc.code == OUT_OF_MEMORY or report.exit_cause == "memory_limit":
        return errors.MemoryLimitExceeded(f"{memory}: {exc.message}" if exc.code == OUT_OF_MEMORY else memory)
    if not isinstance(exc, errors.WorkerLost | errors.WorkerUnreachable):
        return exc
    if report.exit_cause == "cpu_time_limit":
        return errors.CpuLimitExceeded(report.exit_detail)
    if report.exit_cause:
        return errors.WorkerLost(f"{exc.message}: {report.exit_detail}")
    if report.supervisor_lost:
        return errors.SupervisorUnavailable(
            f"{exc.message}; its {plugin.runtime_id} runtime supervisor went away too (the worker died with it): "
            "retry once it is back"
        )
    return exc

"""The one way in: every invocation, whoever asks (REST API, dashboard, MCP, a queue), starts here.

``invocation_submit`` admits the caller's tenant (rate and concurrency quota), runs the
invocation (``execution``) shielded from the caller going away, and returns its recorded
``Outcome``; ``answer`` shapes an outcome as the REST API's JSON. Refusals are invocations too:
a tenant over its quota, or a body too large to read, is recorded (with an ``invocation_id``)
and answered in the error contract's shape.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any, Literal

from platform_core.gateway import errors
from platform_core.gateway.execution import Outcome, invocation_execute, invocation_refuse
from platform_core.gateway.serializers import timings_json
from platform_core.invocations.models import Invocation, Status
from platform_core.tenancy.admission import Refused, Ticket, admission
from platform_core.tenancy.callers import Caller

Style = Literal["calculate", "invoke"]
Answer = tuple[int, dict[str, Any], dict[str, str]]
# Invocations still running after their caller went away (the loop holds tasks weakly).
_detached: set[asyncio.Task[Outcome]] = set()


def _request_line(origin: str, body: bytes) -> str:
    return f"{origin} {body[:200].decode('utf-8', 'replace')}".rstrip()


async def invocation_submit(
    *,
    name: str,
    body: bytes,
    caller: Caller,
    origin: str,
    invocation_id: str | None = None,
    listener: Callable[[dict[str, Any]], None] | None = None,
    ticket: Ticket | None = None,
) -> Outcome:
    """Admit, run and record one invocation of plugin ``name`` (name or operation alias).

    ``origin`` says where it came from for the trace (``POST /api/v1/calculate/subtract``).
    Shielded: a caller that goes away (client disconnect, cancelled task) does not cut the
    invocation short; it still runs to its end, releases its worker and is recorded, and its
    tenant's concurrency slot is held until then.

    ``invocation_id``: the id it was given earlier (queued, or announced on a stream);
    ``listener`` gets each trace item as it happens (``Trace.listeners``); ``ticket``: the
    caller was admitted already (a queued invocation, admitted before it left the queue).
    """
    invocation_id = invocation_id or str(uuid.uuid4())
    line = _request_line(origin, body)
    try:
        ticket = ticket or await admission.enter(caller)
    except Refused as refused:
        error = errors.Throttled(refused.message, code=refused.code, retry_after=refused.retry_after)
        return await invocation_refuse(
            invocation_id=invocation_id, name=name, caller=caller, request_line=line, error=error
        )
    task = asyncio.ensure_future(
        invocation_execute(
            invocation_id=invocation_id, name=name, body=body, caller=caller, request_line=line, listener=listener
        )
    )
    _detached.add(task)
    task.add_done_callback(_detached.discard)
    task.add_done_callback(lambda _: ticket.leave())
    return await asyncio.shield(task)


async def invocation_refuse_body(*, name: str, caller: Caller, origin: str, limit: int) -> Outcome:
    """Record and answer an invocation whose body was larger than ``limit`` bytes (not read)."""
    error = errors.RequestTooLarge(f"request body is larger than {limit} bytes (API_MAX_BODY_BYTES)")
    return await invocation_refuse(
        invocation_id=str(uuid.uuid4()), name=name, caller=caller, request_line=origin, error=error
    )


async def invocation_refuse_error(*, name: str, caller: Caller, origin: str, error: errors.GatewayError) -> Outcome:
    """Record and answer an invocation refused before it ran for ``error`` (an Idempotency-Key
    reused with another request)."""
    return await invocation_refuse(
        invocation_id=str(uuid.uuid4()), name=name, caller=caller, request_line=origin, error=error
    )


def answer(outcome: Outcome, *, style: Style, name: str) -> Answer:
    """(HTTP status, JSON body, headers) of an invocation's REST answer."""
    common = {"invocation_id": outcome.invocation_id, "worker_id": outcome.worker_id, "timings_ms": outcome.timings_ms}
    if outcome.error is not None:
        body = outcome.error.body(**{**common, "worker_id": outcome.worker_id or None})
        return outcome.http_status, body, outcome.headers
    if style == "calculate":
        result = outcome.result if isinstance(outcome.result, dict) else {"result": outcome.result}
        return 200, {**result, **common}, {}
    return 200, {"plugin": name, "status": Status.SUCCEEDED, "result": outcome.result, **common}, {}


def recorded_answer(invocation: Invocation, *, style: Style = "invoke") -> Answer:
    """(HTTP status, JSON body, headers) of a finished invocation, as its first answer had them
    (an idempotent retry, an async invocation's outcome)."""
    common = {
        "invocation_id": str(invocation.id),
        "worker_id": invocation.worker_id,
        "timings_ms": timings_json(invocation),
    }
    if invocation.status == Status.SUCCEEDED:
        if style == "calculate":
            result = invocation.result if isinstance(invocation.result, dict) else {"result": invocation.result}
            return 200, {**result, **common}, {}
        body = {"plugin": invocation.plugin_name, "status": Status.SUCCEEDED, "result": invocation.result}
        return 200, {**body, **common}, {}
    code = invocation.error_code or str(invocation.status)
    body = errors.error_body(code, invocation.error_message, **{**common, "worker_id": invocation.worker_id or None})
    return invocation.http_status or 500, body, {}

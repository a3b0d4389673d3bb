"""The invocation endpoints' ASGI edge, in front of Django.

``InvocationEdge`` answers the invoking and streaming routes itself and passes everything else
(GET API, dashboard, admin, static) on to Django. Under ASGI, Django's built-in middlewares run
each of their sync hooks in a thread (about a dozen thread hops per request, measured: most of
a pooled invocation's gateway CPU); these endpoints need none of them (no session, no CSRF,
JSON or SSE only). The work is the services'; this module only reads HTTP and writes answers:

* ``POST /api/v1/calculate/{op}``, ``POST /api/v1/plugins/{name}/invoke``: run and answer
  JSON, or Server-Sent Events with ``Accept: text/event-stream`` (``streams``);
* ``POST /api/v1/plugins/{name}/invocations``: queue it (``invocation_queue``), 202 + Location;
* ``GET /api/v1/invocations/{id}/events``: follow one (SSE), from its start;
* ``POST /api/v1/invocations/{id}/cancel`` (``cancellation``).

host allowed? → authenticated? (401, not recorded) → body within API_MAX_BODY_BYTES? (413,
recorded) → Idempotency-Key (``idempotency``) → submit, enqueue or stream → answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from platform_core.gateway import (
    auth,
    background,
    cancellation,
    errors,
    idempotency,
    invocation_queue,
    service,
    sse,
    streams,
)
from platform_core.gateway.serializers import invocation_json
from platform_core.invocations.models import Invocation
from platform_core.invocations.snapshots import running_trace
from platform_core.registry.selectors import plugin_get
from platform_core.tenancy.callers import Caller

log = logging.getLogger(__name__)

Route = Literal["calculate", "invoke", "async"]
ROUTES: tuple[tuple[re.Pattern[str], Route], ...] = (
    (re.compile(r"^/api/v1/calculate/(?P<name>[-a-zA-Z0-9_]+)$"), "calculate"),
    (re.compile(r"^/api/v1/plugins/(?P<name>[-a-zA-Z0-9_]+)/invoke$"), "invoke"),
    (re.compile(r"^/api/v1/plugins/(?P<name>[-a-zA-Z0-9_]+)/invocations$"), "async"),
)
_UUID = r"(?P<id>[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})"
CANCEL_ROUTE = re.compile(rf"^/api/v1/invocations/{_UUID}/cancel$")
EVENTS_ROUTE = re.compile(rf"^/api/v1/invocations/{_UUID}/events$")
MCP_PATH = "/mcp"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class InvocationEdge:
    """ASGI app: answers the invocation routes, passes everything else to ``application``."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            background.ensure_started()
            if (handler := self._route(scope, receive)) is not None:
                return await _in_contract(handler, send, scope["path"])
        await self.application(scope, receive, send)

    def _route(self, scope: dict[str, Any], receive: Any) -> Callable[[Any], Awaitable[None]] | None:
        """What answers this request here (called with ``send``), or None: Django's."""
        path, method = scope["path"], scope["method"]
        if method == "POST":
            for pattern, route in ROUTES:
                if match := pattern.match(path):
                    name = match["name"]
                    return lambda send: self._invoke(scope, receive, send, name, route)
            if match := CANCEL_ROUTE.match(path):
                invocation_id = str(uuid.UUID(match["id"]))
                return lambda send: self._cancel(scope, send, invocation_id)
        elif method == "GET" and (match := EVENTS_ROUTE.match(path)):
            invocation_id = str(uuid.UUID(match["id"]))
            return lambda send: self._events(scope, receive, send, invocation_id)
        if path == MCP_PATH or path.startswith(MCP_PATH + "/"):
            return lambda send: self._mcp(scope, receive, send)
        return None

    async def _mcp(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """``/mcp``: the Model Context Protocol (``mcp_server``, imported on first use), for a valid key."""
        found = await self._caller(scope, send)
        if found is None:
            return None
        from platform_core.gateway import mcp_server

        await mcp_server.serve(scope, receive, send, caller=found[1])

    async def _caller(self, scope: dict[str, Any], send: Any) -> tuple[dict[str, str], Caller] | None:
        """The request's headers and caller; None once it has been answered (400, 401)."""
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        host, _ = split_domain_port(headers.get("host", ""))
        if not validate_host(host, settings.ALLOWED_HOSTS):
            error: errors.GatewayError = errors.BadRequest(f"host {host!r} is not served here (DJANGO_ALLOWED_HOSTS)")
            await respond(send, error.http_status, error.body(), error.headers)
            return None
        caller = await auth.caller_async(
            headers.get("authorization", ""),
            headers.get("x-request-id", ""),
            (headers.get("traceparent", ""), headers.get("tracestate", "")),
        )
        if caller is None:
            error = errors.Unauthenticated()
            await respond(send, error.http_status, error.body(), error.headers)
            return None
        return headers, caller

    async def _invoke(self, scope: dict[str, Any], receive: Any, send: Any, name: str, route: Route) -> None:
        found = await self._caller(scope, send)
        if found is None:
            return None
        headers, caller = found
        origin = f"POST {scope['path']}"
        style: service.Style = "calculate" if route == "calculate" else "invoke"
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = await read_body(receive, limit)
        if body is None:
            outcome = await service.invocation_refuse_body(name=name, caller=caller, origin=origin, limit=limit)
            return await respond(send, *service.answer(outcome, style=style, name=name))
        invocation_id = str(uuid.uuid4())
        stream = sse.wants_stream(headers.get("accept", "")) and route != "async"
        if key := headers.get("idempotency-key"):
            try:
                first = await idempotency.key_claim(
                    tenant_id=caller.tenant_id,
                    key=key,
                    fingerprint=idempotency.fingerprint(route=f"{route}/{name}", body=body),
                    invocation_id=invocation_id,
                )
            except errors.GatewayError as error:
                outcome = await service.invocation_refuse_error(name=name, caller=caller, origin=origin, error=error)
                return await respond(send, *service.answer(outcome, style=style, name=name))
            if first is not None:
                return await self._attach(send, receive, first, route, style, stream)
        if route == "async":
            return await self._enqueue(send, name, body, caller, origin, invocation_id)
        if stream:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            return await streams.invocation_stream(
                send=send,
                receive=receive,
                name=name,
                style=style,
                caller=caller,
                body=body,
                origin=origin,
                invocation_id=invocation_id,
                cancel_on_disconnect=query.get("cancel_on_disconnect", [""])[0] in ("1", "true"),
                extra_headers=SECURITY_HEADERS,
            )
        outcome = await service.invocation_submit(
            name=name, body=body, caller=caller, origin=origin, invocation_id=invocation_id
        )
        await respond(send, *service.answer(outcome, style=style, name=name))

    async def _enqueue(
        self, send: Any, name: str, body: bytes, caller: Caller, origin: str, invocation_id: str
    ) -> None:
        plugin = await plugin_get(name=name)
        if plugin is None:  # answered (and recorded) at once, as a synchronous call would be
            outcome = await service.invocation_submit(
                name=name, body=body, caller=caller, origin=origin, invocation_id=invocation_id
            )
            return await respond(send, *service.answer(outcome, style="invoke", name=name))
        await invocation_queue.invocation_enqueue(
            invocation_id=invocation_id, plugin=plugin, body=body, caller=caller, origin=origin
        )
        await _accepted(send, invocation_id, "queued")

    async def _attach(
        self, send: Any, receive: Any, invocation_id: str, route: Route, style: service.Style, stream: bool
    ) -> None:
        """A retry with a known Idempotency-Key: the first invocation's outcome, not a second run."""
        if route == "async":
            return await _accepted(send, invocation_id, "accepted before (Idempotency-Key)")
        if stream:
            invocation = await _wait_recorded(invocation_id)
            if invocation is not None:
                return await streams.events_stream(send=send, receive=receive, invocation=invocation, style=style)
        finished = await idempotency.invocation_wait(invocation_id=invocation_id)
        if finished is None:
            error = errors.GatewayError(
                "the first request with this Idempotency-Key is still running; retry later",
                code="idempotency_key_in_use",
            )
            error.http_status, error.retry_after = 409, 5
            return await respond(send, 409, error.body(invocation_id=invocation_id), error.headers)
        status, payload, extra = service.recorded_answer(finished, style=style)
        await respond(send, status, payload, {**extra, "Idempotent-Replayed": "true"})

    async def _invocation(self, scope: dict[str, Any], send: Any, invocation_id: str) -> Invocation | None:
        """The caller's invocation ``invocation_id``; None once answered (401, 404: another
        tenant's invocation does not exist, as far as this caller can tell)."""
        found = await self._caller(scope, send)
        if found is None:
            return None
        invocation = await _visible(invocation_id, found[1])
        # Accepted a moment ago in this process: its record is being written.
        if invocation is None and _runs_here_for(invocation_id, found[1]) and await _wait_recorded(invocation_id):
            invocation = await _visible(invocation_id, found[1])
        if invocation is None:
            error = errors.NotFound(f"no invocation {invocation_id}", code="unknown_invocation")
            await respond(send, error.http_status, error.body(), error.headers)
        return invocation

    async def _events(self, scope: dict[str, Any], receive: Any, send: Any, invocation_id: str) -> None:
        if (invocation := await self._invocation(scope, send, invocation_id)) is not None:
            await streams.events_stream(send=send, receive=receive, invocation=invocation)

    async def _cancel(self, scope: dict[str, Any], send: Any, invocation_id: str) -> None:
        if (invocation := await self._invocation(scope, send, invocation_id)) is None:
            return None
        cancelled, now = await cancellation.invocation_cancel(invocation_id=invocation_id, status=invocation.status)
        if not cancelled:
            assert isinstance(now, Invocation)
            error = errors.AlreadyFinished(f"invocation {invocation_id} has already finished ({now.status})")
            body = error.body(invocation_id=invocation_id, status=now.status)
            return await respond(send, error.http_status, body, {})
        if now is None:
            location = f"/api/v1/invocations/{invocation_id}"
            return await respond(
                send, 202, {"invocation_id": invocation_id, "status": "cancelling", "location": location}, {}
            )
        assert isinstance(now, Invocation)
        await respond(send, 200, invocation_json(now, trace=True), {})


def _visible_sync(invocation_id: str, caller: Caller) -> Invocation | None:
    invocation = Invocation.objects.filter(pk=invocation_id).first()
    if invocation is None or not (caller.is_staff or invocation.tenant_id == caller.tenant_id):
        return None
    return invocation


def _runs_here_for(invocation_id: str, caller: Caller) -> bool:
    """Whether this process runs ``invocation_id`` for the caller's tenant (or a staff caller)."""
    trace = running_trace(invocation_id)
    return trace is not None and (caller.is_staff or trace.context.get("tenant_id") == caller.tenant_id)


async def _visible(invocation_id: str, caller: Caller) -> Invocation | None:
    return await sync_to_async(_visible_sync, thread_sensitive=False)(invocation_id, caller)


async def _wait_recorded(invocation_id: str, timeout_s: float = 10.0) -> Invocation | None:
    """The invocation's row once it exists (a first request records it a moment after it starts)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = await sync_to_async(Invocation.objects.filter(pk=invocation_id).first, thread_sensitive=False)()
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    return None


async def _accepted(send: Any, invocation_id: str, status: str) -> None:
    location = f"/api/v1/invocations/{invocation_id}"
    payload = {
        "invocation_id": invocation_id,
        "status": status,
        "location": location,
        "events": f"{location}/events",
        "cancel": f"{location}/cancel",
    }
    await respond(send, 202, payload, {"Location": location})


async def read_body(receive: Any, limit: int) -> bytes | None:
    """The whole request body, or None once it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(send: Any, status: int, payload: dict[str, Any], extra: dict[str, str]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += SECURITY_HEADERS
    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _in_contract(handler: Callable[[Any], Awaitable[None]], send: Any, path: str) -> None:
    """Run ``handler(send)``; an exception it lets out is logged and, if nothing was sent yet,
    answered as a JSON 500 in the error contract's shape (the server's own would be text/plain)."""
    started = False

    async def watched(message: dict[str, Any]) -> None:
        nonlocal started
        started |= message["type"] == "http.response.start"
        await send(message)

    try:
        await handler(watched)
    except Exception as exc:
        log.exception("the gateway failed on %s", path)
        if not started:
            error = errors.GatewayError(f"internal error in the gateway: {type(exc).__name__}")
            await respond(send, error.http_status, error.body(), {})

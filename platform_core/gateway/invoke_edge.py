"""The invocation endpoints, shared by two thin edges.

* Django views (``views.calculate``, ``views.plugin_invoke``) — used by Django's test client
  and whenever the request goes through Django;
* ``InvocationEdge``, a plain ASGI app in front of Django that answers the same two POST
  routes directly. Under ASGI, Django's built-in middlewares run each of their sync hooks in
  a thread (about a dozen thread hops per request, measured: most of a pooled invocation's
  gateway CPU); these endpoints need none of them (no session, no CSRF, JSON only), so they
  skip them. Everything else (GET API, dashboard, admin, static) goes on to Django.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Literal

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from platform_core.gateway import auth
from platform_core.gateway.execution import Outcome, invocation_execute
from platform_core.invocations.models import Status
from platform_core.invocations.services import Caller
from platform_core.tenancy.admission import Refused, admission

Style = Literal["calculate", "invoke"]
ROUTES = (
    (re.compile(r"^/api/v1/calculate/(?P<name>[-a-zA-Z0-9_]+)$"), "calculate"),
    (re.compile(r"^/api/v1/plugins/(?P<name>[-a-zA-Z0-9_]+)/invoke$"), "invoke"),
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def invocation_run(*, name: str, body: bytes, caller: Caller, method: str, path: str) -> Outcome:
    """Run an invocation for an HTTP request. Shielded: a client that disconnects does not cut
    it short; it is still finished, released and recorded."""
    line = f"{method} {path} {body[:200].decode('utf-8', 'replace')}"
    task = asyncio.ensure_future(invocation_execute(name=name, body=body, caller=caller, request_line=line))
    return await asyncio.shield(task)


Answer = tuple[int, dict[str, Any], dict[str, str]]


async def invocation_answer(
    *, authorization: str, request_id: str, name: str, body: bytes, style: Style, path: str
) -> Answer:
    """Authenticate, admit (tenant rate and concurrency), run, and shape the HTTP answer."""
    resolved = await auth.caller_async(authorization, request_id)
    if resolved is None:
        failure = auth.UNAUTHENTICATED
        return failure.http_status, failure.body, failure.headers
    caller, owner = resolved
    try:
        admission.enter(
            owner.tenant, rate_per_s=owner.rate_per_s, burst=owner.burst, max_concurrent=owner.max_concurrent
        )
    except Refused as refused:
        return (
            429,
            {"error": {"code": refused.code, "message": refused.message}},
            {"Retry-After": str(refused.retry_after)},
        )
    try:
        outcome = await invocation_run(name=name, body=body, caller=caller, method="POST", path=path)
    finally:
        admission.leave(owner.tenant)
    return outcome_body(outcome, style=style, name=name)


def outcome_body(outcome: Outcome, *, style: Style, name: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) of an invocation's HTTP answer."""
    if outcome.error is not None:
        body = {
            **outcome.error.body(),
            "invocation_id": outcome.invocation_id,
            "worker_id": outcome.worker_id or None,
            "timings_ms": outcome.timings_ms,
        }
        return outcome.http_status, body, outcome.headers
    common = {"invocation_id": outcome.invocation_id, "worker_id": outcome.worker_id, "timings_ms": outcome.timings_ms}
    if style == "calculate":
        result = outcome.result if isinstance(outcome.result, dict) else {"result": outcome.result}
        return 200, {**result, **common}, {}
    return 200, {"plugin": name, "status": Status.SUCCEEDED, "result": outcome.result, **common}, {}


def too_large_body() -> dict[str, Any]:
    return {"error": {"code": "request_too_large", "message": "request body is larger than API_MAX_BODY_BYTES"}}


class InvocationEdge:
    """ASGI app: answers the invocation POST routes, passes everything else to ``application``."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for pattern, style in ROUTES:
                if match := pattern.match(scope["path"]):
                    return await self._invoke(scope, receive, send, match["name"], style)
        return await self.application(scope, receive, send)

    async def _invoke(self, scope: dict, receive: Any, send: Any, name: str, style: Style) -> None:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        host, _ = split_domain_port(headers.get("host", ""))
        if not validate_host(host, settings.ALLOWED_HOSTS):
            return await _respond(send, 400, {"error": {"code": "bad_request", "message": "host not allowed"}}, {})
        body = await _read_body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if body is None:
            return await _respond(send, 413, too_large_body(), {})
        status, payload, extra = await invocation_answer(
            authorization=headers.get("authorization", ""),
            request_id=headers.get("x-request-id", ""),
            name=name,
            body=body,
            style=style,
            path=scope["path"],
        )
        await _respond(send, status, payload, extra)


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole request body, or None once it grows past ``limit`` bytes."""
    chunks, size = [], 0
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


async def _respond(send: Any, status: int, payload: dict[str, Any], extra: dict[str, str]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in {**SECURITY_HEADERS, **extra}.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

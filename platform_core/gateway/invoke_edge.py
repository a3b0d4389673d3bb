"""The invocation endpoints' ASGI edge, in front of Django.

``InvocationEdge`` answers ``POST /api/v1/calculate/{op}`` and ``POST /api/v1/plugins/{name}/invoke``
itself and passes everything else (GET API, dashboard, admin, static) on to Django. Under ASGI,
Django's built-in middlewares run each of their sync hooks in a thread (about a dozen thread
hops per request, measured: most of a pooled invocation's gateway CPU); these endpoints need
none of them (no session, no CSRF, JSON only). The work is the service's
(``service.invocation_submit``); this module only reads HTTP and writes the answer:

host allowed? → authenticated? (401, not recorded) → body within API_MAX_BODY_BYTES? (413,
recorded) → submit → answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from platform_core.gateway import auth, errors, service

ROUTES: tuple[tuple[re.Pattern[str], service.Style], ...] = (
    (re.compile(r"^/api/v1/calculate/(?P<name>[-a-zA-Z0-9_]+)$"), "calculate"),
    (re.compile(r"^/api/v1/plugins/(?P<name>[-a-zA-Z0-9_]+)/invoke$"), "invoke"),
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class InvocationEdge:
    """ASGI app: answers the invocation POST routes, passes everything else to ``application``."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for pattern, style in ROUTES:
                if match := pattern.match(scope["path"]):
                    return await self._invoke(scope, receive, send, match["name"], style)
        await self.application(scope, receive, send)

    async def _invoke(self, scope: dict[str, Any], receive: Any, send: Any, name: str, style: service.Style) -> None:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        host, _ = split_domain_port(headers.get("host", ""))
        if not validate_host(host, settings.ALLOWED_HOSTS):
            error: errors.GatewayError = errors.BadRequest(f"host {host!r} is not served here (DJANGO_ALLOWED_HOSTS)")
            return await respond(send, error.http_status, error.body(), error.headers)
        caller = await auth.caller_async(
            headers.get("authorization", ""),
            headers.get("x-request-id", ""),
            (headers.get("traceparent", ""), headers.get("tracestate", "")),
        )
        if caller is None:
            error = errors.Unauthenticated()
            return await respond(send, error.http_status, error.body(), error.headers)
        origin = f"POST {scope['path']}"
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = await read_body(receive, limit)
        if body is None:
            outcome = await service.invocation_refuse_body(name=name, caller=caller, origin=origin, limit=limit)
        else:
            outcome = await service.invocation_submit(name=name, body=body, caller=caller, origin=origin)
        await respond(send, *service.answer(outcome, style=style, name=name))


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

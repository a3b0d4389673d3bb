"""REST API v1: thin views over the execution service and the selectors."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.paginator import EmptyPage, Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from platform_core.gateway import errors, runtime_client, service
from platform_core.gateway.auth import caller_async, caller_sync
from platform_core.gateway.openapi import openapi_document
from platform_core.gateway.serializers import invocation_json, plugin_json
from platform_core.invocations.models import Status
from platform_core.invocations.selectors import invocation_with_trace, invocations_query
from platform_core.observability import metrics as prometheus
from platform_core.registry.selectors import plugin_by_name, plugins_list, registry_ping
from platform_core.tenancy.callers import Caller

MAX_PAGE_SIZE = 200


def error_response(error: errors.GatewayError, **extra: Any) -> JsonResponse:
    """A ``GatewayError`` as a Django response: the contract's body and headers."""
    response = JsonResponse(error.body(**extra), status=error.http_status)
    for header, value in error.headers.items():
        response[header] = value
    return response


async def _invocation_view(request: HttpRequest, name: str, style: service.Style) -> JsonResponse:
    """The Django twin of the ASGI edge (``invoke_edge``), for clients that go through Django."""
    caller = await caller_async(
        request.headers.get("Authorization", ""),
        request.headers.get("X-Request-ID", ""),
        (request.headers.get("traceparent", ""), request.headers.get("tracestate", "")),
    )
    if caller is None:
        return error_response(errors.Unauthenticated())
    origin = f"POST {request.path}"
    try:
        body = request.body
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        outcome = await service.invocation_refuse_body(name=name, caller=caller, origin=origin, limit=limit)
    else:
        outcome = await service.invocation_submit(name=name, body=body, caller=caller, origin=origin)
    status, payload, headers = service.answer(outcome, style=style, name=name)
    response = JsonResponse(payload, status=status)
    for header, value in headers.items():
        response[header] = value
    return response


@require_POST
async def calculate(request: HttpRequest, operation: str) -> JsonResponse:
    """The seed's API: POST /api/v1/calculate/{operation} {"operand1": .., "operand2": ..}."""
    return await _invocation_view(request, operation, "calculate")


@require_POST
async def plugin_invoke(request: HttpRequest, name: str) -> JsonResponse:
    """POST /api/v1/plugins/{name}/invoke with any JSON arguments."""
    return await _invocation_view(request, name, "invoke")


class AuthenticatedRequest(HttpRequest):
    caller: Caller  # set by @authenticated


def authenticated(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Resolve the API key to ``request.caller`` (sync views), or answer 401."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        caller = caller_sync(request.headers.get("Authorization", ""), request.headers.get("X-Request-ID", ""))
        if caller is None:
            return error_response(errors.Unauthenticated())
        request.caller = caller  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


@require_GET
@authenticated
def plugins(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"plugins": [plugin_json(p) for p in plugins_list()]})


@require_GET
@authenticated
def plugin_detail(request: HttpRequest, name: str) -> JsonResponse:
    plugin = plugin_by_name(name=name)
    if plugin is None:
        return error_response(errors.UnknownPlugin(f"no plugin is called {name!r}"))
    return JsonResponse(plugin_json(plugin, schemas=True))


def _int_param(request: HttpRequest, name: str, default: int, maximum: int) -> int:
    value = request.GET.get(name, str(default))
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise ValueError(f"{name} must be an integer from 1 to {maximum}")
    return int(value)


@require_GET
@authenticated
def invocations(request: AuthenticatedRequest) -> JsonResponse:
    """GET /api/v1/invocations?plugin=&status=&tenant=&worker=&page=&page_size=

    A tenant sees its own invocations; staff keys see all (and may filter by tenant)."""
    status = request.GET.get("status")
    if status is not None and status not in Status.values:
        return error_response(errors.InvalidParameter(f"status must be one of {', '.join(Status.values)}"))
    try:
        page_number = _int_param(request, "page", 1, 10**9)
        page_size = _int_param(request, "page_size", 50, MAX_PAGE_SIZE)
    except ValueError as exc:
        return error_response(errors.InvalidParameter(str(exc)))
    query = invocations_query(
        plugin=request.GET.get("plugin"),
        status=status,
        tenant=request.GET.get("tenant") if request.caller.is_staff else request.caller.tenant_id,
        worker=request.GET.get("worker"),
    )
    paginator = Paginator(query, page_size)
    try:
        page = paginator.page(page_number)
    except EmptyPage:
        page = None
    return JsonResponse(
        {
            "count": paginator.count,
            "page": page_number,
            "page_size": page_size,
            "pages": paginator.num_pages,
            "results": [invocation_json(i) for i in page] if page else [],
        }
    )


@require_GET
@authenticated
def invocation_detail(request: AuthenticatedRequest, invocation_id: uuid.UUID) -> JsonResponse:
    invocation = invocation_with_trace(invocation_id=str(invocation_id))
    # Another tenant's invocation does not exist, as far as this caller can tell.
    if invocation is None or not (request.caller.is_staff or invocation.tenant_id == request.caller.tenant_id):
        return error_response(errors.NotFound(f"no invocation {invocation_id}", code="unknown_invocation"))
    return JsonResponse(invocation_json(invocation, trace=True))


@require_GET
async def workers(request: HttpRequest) -> JsonResponse:
    caller = await caller_async(request.headers.get("Authorization", ""))
    if caller is None:
        return error_response(errors.Unauthenticated())
    scope = None if caller.is_staff else caller.tenant_id  # a tenant sees the workers started for it
    supervisors = await runtime_client.workers_list(scope=scope)
    return JsonResponse({"supervisors": supervisors, "hosts": runtime_client.workers_by_host(supervisors)})


@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    """Liveness of the gateway, its database and each supervisor (200 when the database answers)."""
    try:
        await sync_to_async(registry_ping)()
        database: dict[str, Any] = {"ok": True}
    except Exception as exc:
        database = {"ok": False, "error": str(exc)}
    supervisors = [
        {
            "runtime": s["runtime"],
            "address": s["address"],
            "up": s["up"],
            "workers": len(s["workers"]),
            # Whether its process workers are sandboxed (docs/SECURITY.md); absent while it is down.
            **({"isolation": s["isolation"]} if s.get("isolation") else {}),
        }
        for s in await runtime_client.workers_list(scope=None)
    ]
    ok = database["ok"]
    return JsonResponse(
        {"status": "ok" if ok else "degraded", "database": database, "supervisors": supervisors},
        status=200 if ok else 503,
    )


@require_GET
async def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics (docs/OBSERVABILITY.md): loopback scrapers only, or METRICS_TOKEN."""
    token = settings.PLATFORM_METRICS_TOKEN
    if not prometheus.scrape_allowed(
        token=token,
        authorization=request.headers.get("Authorization", ""),
        client_host=request.META.get("REMOTE_ADDR", ""),
    ):
        if token:
            return error_response(
                errors.Unauthenticated("send the scrape token: 'Authorization: Bearer <METRICS_TOKEN>'")
            )
        return error_response(
            errors.Forbidden("/metrics answers loopback clients only; set METRICS_TOKEN to scrape from elsewhere")
        )
    prometheus.seats_sample()
    supervisors = prometheus.supervisor_families(await runtime_client.workers_list(scope=None))
    body, content_type = prometheus.exposition(supervisors)
    return HttpResponse(body, content_type=content_type)


@require_GET
def openapi(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_document(), json_dumps_params={"indent": 1})


def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    return error_response(errors.NotFound(f"no API endpoint at {request.path}; see /api/v1/openapi.json"))

"""REST API v1: thin views over the execution service and the selectors."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.core.paginator import EmptyPage, Paginator
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from platform_core.gateway import runtime_client
from platform_core.gateway.auth import UNAUTHENTICATED, caller_async, caller_sync
from platform_core.gateway.invoke_edge import Style, invocation_answer, too_large_body
from platform_core.gateway.openapi import openapi_document
from platform_core.gateway.serializers import invocation_json, plugin_json
from platform_core.invocations.models import Status
from platform_core.invocations.selectors import invocation_with_trace, invocations_query
from platform_core.registry.models import PluginSpec
from platform_core.registry.selectors import plugins_list

MAX_PAGE_SIZE = 200


def error_response(http_status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}, **extra}, status=http_status)


async def _invocation_view(request: HttpRequest, name: str, style: Style) -> JsonResponse:
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse(too_large_body(), status=413)
    status, payload, headers = await invocation_answer(
        authorization=request.headers.get("Authorization", ""),
        request_id=request.headers.get("X-Request-ID", ""),
        name=name,
        body=body,
        style=style,
        path=request.path,
    )
    response = JsonResponse(payload, status=status)
    for header, value in headers.items():
        response[header] = value
    return response


@csrf_exempt
@require_POST
async def calculate(request: HttpRequest, operation: str) -> JsonResponse:
    """The seed's API: POST /api/v1/calculate/{operation} {"operand1": .., "operand2": ..}."""
    return await _invocation_view(request, operation, "calculate")


@csrf_exempt
@require_POST
async def plugin_invoke(request: HttpRequest, name: str) -> JsonResponse:
    """POST /api/v1/plugins/{name}/invoke with any JSON arguments."""
    return await _invocation_view(request, name, "invoke")


def _unauthenticated() -> JsonResponse:
    response = JsonResponse(UNAUTHENTICATED.body, status=UNAUTHENTICATED.http_status)
    for header, value in UNAUTHENTICATED.headers.items():
        response[header] = value
    return response


def authenticated(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Resolve the API key to ``request.caller`` (sync views), or answer 401."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        caller = caller_sync(request.headers.get("Authorization", ""), request.headers.get("X-Request-ID", ""))
        if caller is None:
            return _unauthenticated()
        request.caller = caller
        return view(request, *args, **kwargs)

    return wrapper


@require_GET
@authenticated
def plugins(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"plugins": [plugin_json(p) for p in plugins_list()]})


@require_GET
@authenticated
def plugin_detail(request: HttpRequest, name: str) -> JsonResponse:
    plugin = PluginSpec.objects.filter(name=name).first()
    if plugin is None:
        return error_response(404, "unknown_plugin", f"no plugin is called {name!r}")
    return JsonResponse(plugin_json(plugin, schemas=True))


def _int_param(request: HttpRequest, name: str, default: int, maximum: int) -> int:
    value = request.GET.get(name, str(default))
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise ValueError(f"{name} must be an integer from 1 to {maximum}")
    return int(value)


@require_GET
@authenticated
def invocations(request: HttpRequest) -> JsonResponse:
    """GET /api/v1/invocations?plugin=&status=&tenant=&worker=&page=&page_size=

    A tenant sees its own invocations; staff keys see all (and may filter by tenant)."""
    status = request.GET.get("status")
    if status and status not in Status.values:
        return error_response(400, "invalid_parameter", f"status must be one of {', '.join(Status.values)}")
    try:
        page_number = _int_param(request, "page", 1, 10**9)
        page_size = _int_param(request, "page_size", 50, MAX_PAGE_SIZE)
    except ValueError as exc:
        return error_response(400, "invalid_parameter", str(exc))
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
def invocation_detail(request: HttpRequest, invocation_id: uuid.UUID) -> JsonResponse:
    invocation = invocation_with_trace(invocation_id=str(invocation_id))
    # Another tenant's invocation does not exist, as far as this caller can tell.
    if invocation is None or not (request.caller.is_staff or invocation.tenant_id == request.caller.tenant_id):
        return error_response(404, "unknown_invocation", f"no invocation {invocation_id}")
    return JsonResponse(invocation_json(invocation, trace=True))


@require_GET
async def workers(request: HttpRequest) -> JsonResponse:
    if await caller_async(request.headers.get("Authorization", "")) is None:
        return _unauthenticated()
    supervisors = await runtime_client.workers_list()
    return JsonResponse({"supervisors": supervisors, "hosts": runtime_client.workers_by_host(supervisors)})


@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    """Liveness of the gateway, its database and each supervisor (200 when the database answers)."""
    try:
        await sync_to_async(lambda: PluginSpec.objects.exists())()
        database = {"ok": True}
    except Exception as exc:
        database = {"ok": False, "error": str(exc)}
    supervisors = [
        {"runtime": s["runtime"], "address": s["address"], "up": s["up"], "workers": len(s["workers"])}
        for s in await runtime_client.workers_list()
    ]
    ok = database["ok"]
    return JsonResponse(
        {"status": "ok" if ok else "degraded", "database": database, "supervisors": supervisors},
        status=200 if ok else 503,
    )


@require_GET
def openapi(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_document(), json_dumps_params={"indent": 1})


def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    return error_response(404, "not_found", f"no API endpoint at {request.path}; see /api/v1/openapi.json")

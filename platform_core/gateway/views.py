"""REST API v1: thin views over the execution service and the selectors."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.core.paginator import EmptyPage, Paginator
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from platform_core.gateway import runtime_client
from platform_core.gateway.execution import Outcome, invocation_execute
from platform_core.gateway.openapi import openapi_document
from platform_core.gateway.serializers import invocation_json, plugin_json
from platform_core.invocations.models import Status
from platform_core.invocations.selectors import invocation_with_trace, invocations_query
from platform_core.invocations.services import Caller
from platform_core.registry.models import PluginSpec
from platform_core.registry.selectors import plugins_list

MAX_PAGE_SIZE = 200


def error_response(http_status: int, code: str, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}, **extra}, status=http_status)


def _caller(request: HttpRequest) -> Caller:
    request_id = request.headers.get("X-Request-ID", "")[:100] or str(uuid.uuid4())
    return Caller(tenant_id="default", user_id="anonymous", session_id="", request_id=request_id)


async def _run(request: HttpRequest, name: str) -> Outcome:
    try:
        body = request.body
    except RequestDataTooBig:
        body = None
    if body is None:
        return None
    line = f"{request.method} {request.path} {body[:200].decode('utf-8', 'replace')}"
    # Shielded: a client that disconnects does not cut an invocation short; it is still
    # finished, released and recorded.
    return await asyncio.shield(
        asyncio.ensure_future(invocation_execute(name=name, body=body, caller=_caller(request), request_line=line))
    )


def _too_big() -> JsonResponse:
    return error_response(413, "request_too_large", "request body is larger than API_MAX_BODY_BYTES")


def _error_json(outcome: Outcome) -> JsonResponse:
    response = JsonResponse(
        {
            **outcome.error.body(),
            "invocation_id": outcome.invocation_id,
            "worker_id": outcome.worker_id or None,
            "timings_ms": outcome.timings_ms,
        },
        status=outcome.http_status,
    )
    for header, value in outcome.headers.items():
        response[header] = value
    return response


@csrf_exempt
@require_POST
async def calculate(request: HttpRequest, operation: str) -> JsonResponse:
    """The seed's API: POST /api/v1/calculate/{operation} {"operand1": .., "operand2": ..}."""
    outcome = await _run(request, operation)
    if outcome is None:
        return _too_big()
    if outcome.error is not None:
        return _error_json(outcome)
    result = outcome.result if isinstance(outcome.result, dict) else {"result": outcome.result}
    return JsonResponse(
        {
            **result,
            "invocation_id": outcome.invocation_id,
            "worker_id": outcome.worker_id,
            "timings_ms": outcome.timings_ms,
        }
    )


@csrf_exempt
@require_POST
async def plugin_invoke(request: HttpRequest, name: str) -> JsonResponse:
    """POST /api/v1/plugins/{name}/invoke with any JSON arguments."""
    outcome = await _run(request, name)
    if outcome is None:
        return _too_big()
    if outcome.error is not None:
        return _error_json(outcome)
    return JsonResponse(
        {
            "invocation_id": outcome.invocation_id,
            "plugin": name,
            "status": Status.SUCCEEDED,
            "result": outcome.result,
            "worker_id": outcome.worker_id,
            "timings_ms": outcome.timings_ms,
        }
    )


@require_GET
def plugins(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"plugins": [plugin_json(p) for p in plugins_list()]})


@require_GET
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
def invocations(request: HttpRequest) -> JsonResponse:
    """GET /api/v1/invocations?plugin=&status=&tenant=&worker=&page=&page_size="""
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
        tenant=request.GET.get("tenant"),
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
def invocation_detail(request: HttpRequest, invocation_id: uuid.UUID) -> JsonResponse:
    invocation = invocation_with_trace(invocation_id=str(invocation_id))
    if invocation is None:
        return error_response(404, "unknown_invocation", f"no invocation {invocation_id}")
    return JsonResponse(invocation_json(invocation, trace=True))


@require_GET
async def workers(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"supervisors": await runtime_client.workers_list()})


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


__all__ = ["json"]

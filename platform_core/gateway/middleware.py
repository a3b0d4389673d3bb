"""Every response under /api/ is JSON: Django's HTML error pages are replaced, stack traces never shown."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse

from platform_core.gateway import errors

log = logging.getLogger(__name__)

# What Django itself answers with HTML, as the error contract's codes.
_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    500: "internal_error",
}


def _jsonify(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if not request.path.startswith("/api/") or response.status_code < 400:
        return response
    if response.get("Content-Type", "").startswith("application/json"):
        return response
    status = response.status_code
    message = {405: f"{request.method} is not allowed here; allowed: {response.get('Allow', '')}"}.get(
        status, response.reason_phrase
    )
    replacement = JsonResponse(errors.error_body(_CODES.get(status, "error"), message), status=status)
    for header in ("Allow", "Retry-After"):
        if header in response:
            replacement[header] = response[header]
    return replacement


class ApiJsonErrorsMiddleware:
    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        return _jsonify(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return _jsonify(request, await self.get_response(request))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None
        log.exception("unhandled error in %s %s", request.method, request.path, exc_info=exception)
        return JsonResponse(errors.error_body("internal_error", "internal error; see the gateway log"), status=500)

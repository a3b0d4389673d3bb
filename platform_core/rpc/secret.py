"""A shared secret on the supervisor API: sent as gRPC metadata by the gateway, checked on every call.

Supervisors bind to loopback by default. Binding elsewhere requires SUPERVISOR_SECRET (or
SUPERVISOR_SECRET_FILE) on both sides; a call without the right secret is refused with
UNAUTHENTICATED before it reaches the supervisor.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

METADATA_KEY = "x-supervisor-secret"


class SecretCheck(grpc.aio.ServerInterceptor):
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong supervisor secret")

        async def refuse_stream(request: Any, context: grpc.aio.ServicerContext):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong supervisor secret")
            yield  # pragma: no cover — makes this an async generator

        self._refuse_unary: grpc.RpcMethodHandler[Any, None] = grpc.unary_unary_rpc_method_handler(refuse)
        self._refuse_stream: grpc.RpcMethodHandler[Any, None] = grpc.unary_stream_rpc_method_handler(refuse_stream)

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        presented = dict(details.invocation_metadata or ()).get(METADATA_KEY, "")
        if hmac.compare_digest(presented.encode() if isinstance(presented, str) else presented, self._secret):
            return await continuation(details)
        return self._refuse_stream if details.method.endswith("/WatchWorkers") else self._refuse_unary


class _AddSecret(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, secret: str) -> None:
        self._pair = (METADATA_KEY, secret)

    def _with_secret(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), self._pair)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(self._with_secret(details), request)

    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(self._with_secret(details), request)


def client_interceptors(secret: str) -> list[Any]:
    """Interceptors that send ``secret`` with every call (none when there is no secret)."""
    return [_AddSecret(secret)] if secret else []

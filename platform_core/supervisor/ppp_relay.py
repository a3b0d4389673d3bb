"""The PPP relay: gateways on other hosts reach this supervisor's workers through it.

Workers have no network; their PPP server listens on a Unix socket that only processes sharing
this host's file system view can open. A gateway elsewhere calls ``/ppp.v1.PluginWorker/*`` on
the supervisor's own gRPC port (same TLS, same secret check as the supervisor API) with the
metadata ``x-ppp-worker: <worker id>``; the relay forwards the call to that worker's socket and
the answers back, as raw bytes: payloads are never decoded, so a worker and a gateway that
speak a newer PPP need no new supervisor.

* Only workers of this supervisor that are alive are reachable (NOT_FOUND otherwise): the
  relay does not care how the worker was obtained (allocation, pool, lease), only whose it is.
* The caller's deadline goes to the worker's call; a cancelled caller cancels it.
* What the worker's call ends with (OK, a status, a dropped connection: UNAVAILABLE) is what the
  caller's call ends with, so a gateway handles a relayed worker's crash as a local one's.

Known PPP methods take the cheapest call shape that carries them (unary for Init and Health,
server streaming for Invoke); any other method is relayed as a bidirectional stream, which
carries every shape.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from platform_core.rpc import FAST_CHANNEL_OPTIONS, PPP_RELAY_WORKER_KEY

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/ppp.v1.PluginWorker/"
WORKER_KEY = PPP_RELAY_WORKER_KEY
# Metadata of the hop to the supervisor, not of the call to the worker.
_HOP_KEYS = frozenset({WORKER_KEY, "x-supervisor-secret"})
_UNARY = frozenset({SERVICE_PREFIX + "Init", SERVICE_PREFIX + "Health"})
_SERVER_STREAMING = frozenset({SERVICE_PREFIX + "Invoke"})


class PppRelay(grpc.GenericRpcHandler):
    """A generic handler for ``/ppp.v1.PluginWorker/*`` on the supervisor's server."""

    def __init__(self, workers: dict[str, Any]) -> None:
        # The supervisor's live table (worker id → Worker): read at each call, never copied.
        self._workers = workers
        self._channels: dict[str, grpc.aio.Channel] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        if not method.startswith(SERVICE_PREFIX):
            return None
        # No (de)serializers: requests and responses stay bytes.
        if method in _UNARY:
            return grpc.unary_unary_rpc_method_handler(functools.partial(self._unary, method))
        if method in _SERVER_STREAMING:
            return grpc.unary_stream_rpc_method_handler(functools.partial(self._server_streaming, method))
        return grpc.stream_stream_rpc_method_handler(functools.partial(self._streaming, method))

    # --- the three shapes -------------------------------------------------------------------

    async def _unary(self, method: str, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        channel, metadata, timeout = await self._upstream(context)
        try:
            return await channel.unary_unary(method)(request, metadata=metadata, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            await self._fail(context, exc)
            raise  # unreachable: abort raises

    async def _server_streaming(
        self, method: str, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        channel, metadata, timeout = await self._upstream(context)
        call = channel.unary_stream(method)(request, metadata=metadata, timeout=timeout)
        async for response in self._responses(call, context):
            yield response

    async def _streaming(self, method: str, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext):
        channel, metadata, timeout = await self._upstream(context)
        call = channel.stream_stream(method)(metadata=metadata, timeout=timeout)

        async def forward_requests() -> None:
            async for request in requests:
                await call.write(request)
            await call.done_writing()

        pump = asyncio.create_task(forward_requests())
        try:
            async for response in self._responses(call, context):
                yield response
        finally:
            pump.cancel()

    async def _responses(self, call, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """The worker's responses; its call's end becomes the caller's."""
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            await self._fail(context, exc)
        finally:
            call.cancel()  # a no-op once finished; stops the worker's call if the caller went away

    # --- shared ------------------------------------------------------------------------------

    async def _upstream(self, context: grpc.aio.ServicerContext) -> tuple[grpc.aio.Channel, list, float | None]:
        """The worker's channel, the metadata to pass on, and the caller's time left."""
        metadata = context.invocation_metadata() or ()
        worker_id = next((value for key, value in metadata if key == WORKER_KEY), "")
        if not worker_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"a relayed PPP call needs {WORKER_KEY} metadata")
        worker = self._workers.get(worker_id)
        if worker is None or not worker.alive or not worker.address:
            log.warning("relay refused a call for %s: not a live worker of this supervisor", worker_id)
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{worker_id} is not a live worker of this supervisor")
        passed_on = [(key, value) for key, value in metadata if key not in _HOP_KEYS and not key.startswith("grpc-")]
        # time_remaining() is None without a deadline; the worker's call then has none either.
        return self._channel(worker.address), passed_on, context.time_remaining()

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            self._forget_gone()
            channel = self._channels[address] = grpc.aio.insecure_channel(address, options=FAST_CHANNEL_OPTIONS)
        return channel

    def _forget_gone(self) -> None:
        """Close the channels of workers that are gone (checked whenever a channel is opened)."""
        live = {worker.address for worker in self._workers.values() if worker.alive}
        for address in [a for a in self._channels if a not in live]:
            channel = self._channels.pop(address)
            asyncio.get_running_loop().create_task(channel.close())

    @staticmethod
    async def _fail(context: grpc.aio.ServicerContext, exc: grpc.aio.AioRpcError) -> None:
        """End the caller's call as the worker's ended."""
        await context.abort(exc.code(), exc.details() or "", exc.trailing_metadata() or ())

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(channel.close() for channel in channels), return_exceptions=True)

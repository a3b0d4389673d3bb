"""How the gateway reaches a worker: its Unix socket, or its supervisor's PPP relay.

A worker on this gateway's host (same host id: ``platform_core/rpc/host_identity.py``) is
reached directly on the Unix socket the supervisor handed out. A worker on another host is
reached through the supervisor that owns it: the same PPP calls, sent to the supervisor's
address (mutual TLS when configured) with the worker's id in the metadata
(``platform_core/supervisor/ppp_relay.py``). Nothing else of the PPP session changes.

``worker_route(...)`` turns what an allocation (or a lease) says about a worker into a
``WorkerRoute``; ``worker_channels`` keeps the channels (one per worker socket, one per relaying
supervisor shared by all its workers) and which worker sessions are initialized.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from django.conf import settings

from platform_core.rpc import FAST_CHANNEL_OPTIONS, PPP_RELAY_WORKER_KEY
from platform_core.rpc.host_identity import local_host
from platform_core.rpc.secret import METADATA_KEY as SECRET_KEY
from platform_core.tls import supervisor_channel


@dataclass(frozen=True)
class WorkerRoute:
    worker_id: str
    # gRPC target the channel connects to: the worker's socket, or the relaying supervisor.
    target: str
    # Passed with every PPP call (None on the direct path: nothing to add).
    metadata: tuple[tuple[str, str], ...] | None
    relayed: bool
    # For the trace: which path the invocation took.
    description: str

    @property
    def session_key(self) -> str:
        """One worker's PPP session (Init once per session for pooled workers)."""
        return f"{self.target}#{self.worker_id}" if self.relayed else self.target


def worker_route(*, worker_id: str, address: str, host_id: str, host_name: str, supervisor: str) -> WorkerRoute:
    """The route to worker ``worker_id`` that supervisor ``supervisor`` (its address) handed out."""
    if local_host().sees(host_id):
        return WorkerRoute(worker_id, address, None, False, f"direct unix socket {address}")
    metadata = [(PPP_RELAY_WORKER_KEY, worker_id)]
    if settings.PLATFORM_SUPERVISOR_SECRET:
        metadata.append((SECRET_KEY, settings.PLATFORM_SUPERVISOR_SECRET))
    tls = " over mutual TLS" if settings.PLATFORM_SUPERVISOR_TLS is not None else ""
    where = host_name or host_id
    return WorkerRoute(
        worker_id,
        supervisor,
        tuple(metadata),
        True,
        f"relay via supervisor {supervisor}{tls} to {worker_id} on {where}",
    )


def lease_route(lease) -> WorkerRoute:
    """The route of a ``runtime_client.WorkerLease``."""
    return worker_route(
        worker_id=lease.worker_id,
        address=lease.address,
        host_id=lease.host_id,
        host_name=lease.host_name,
        supervisor=lease.supervisor,
    )


class WorkerChannels:
    """gRPC channels to workers per event loop: a worker socket's channel is closed when the worker
    goes; a relay channel serves all workers of its supervisor and stays."""

    def __init__(self) -> None:
        self._channels: dict[tuple[int, str], grpc.aio.Channel] = {}
        self._initialized: set[tuple[int, str]] = set()

    def initialized(self, route: WorkerRoute) -> bool:
        return (id(asyncio.get_running_loop()), route.session_key) in self._initialized

    def mark_initialized(self, route: WorkerRoute) -> None:
        self._initialized.add((id(asyncio.get_running_loop()), route.session_key))

    def get(self, route: WorkerRoute) -> grpc.aio.Channel:
        key = (id(asyncio.get_running_loop()), route.target)
        channel = self._channels.get(key)
        if channel is None:
            if route.relayed:
                channel = supervisor_channel(route.target, options=FAST_CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.insecure_channel(route.target, options=FAST_CHANNEL_OPTIONS)
            self._channels[key] = channel
        return channel

    async def forget(self, route: WorkerRoute) -> None:
        """The worker is gone: its session, and its channel unless the supervisor's relay shares it."""
        loop = id(asyncio.get_running_loop())
        self._initialized.discard((loop, route.session_key))
        if not route.relayed and (channel := self._channels.pop((loop, route.target), None)) is not None:
            await channel.close()


worker_channels = WorkerChannels()

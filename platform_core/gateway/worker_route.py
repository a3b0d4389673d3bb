"""How the gateway reaches a worker: its Unix socket, or its supervisor's PPP relay.

A worker on this gateway's host (same host id: ``platform_core/rpc/host_identity.py``) is
reached directly on the Unix socket the supervisor handed out. A worker on another host is
reached through the relay of the supervisor that owns it (``platform_core/supervisor/ppp_relay.py``):
the channel connects to the relay as to an HTTP proxy, naming the worker, and then speaks PPP to
the worker through it (mutual TLS with the relay when configured). The PPP session itself does
not change: same calls, same metadata, same errors.

``worker_route(...)`` turns what an allocation (or a lease) says about a worker into a
``WorkerRoute``; ``worker_channels`` keeps one channel per worker and event loop, and which
worker sessions are initialized.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import grpc
from django.conf import settings

from platform_core.rpc import FAST_CHANNEL_OPTIONS, ppp_grpc
from platform_core.rpc.host_identity import local_host
from platform_core.supervisor.ppp_relay import relay_target
from platform_core.tls import TlsMaterial

if TYPE_CHECKING:
    from platform_core.gateway.runtime_client import WorkerLease


@dataclass(frozen=True)
class WorkerRoute:
    worker_id: str
    # gRPC target of the channel: the worker's socket, or the relay's name for the worker.
    target: str
    # host:port of the relay the channel goes through; None on the direct path.
    relay: str | None
    # For the trace: which path the invocation took.
    description: str

    @property
    def relayed(self) -> bool:
        return self.relay is not None

    @property
    def key(self) -> str:
        """One worker's channel and PPP session (Init once per session for pooled workers)."""
        return f"{self.relay}/{self.target}" if self.relay else self.target


def worker_route(
    *, worker_id: str, address: str, host_id: str, host_name: str, supervisor: str, relay_port: int
) -> WorkerRoute:
    """The route to worker ``worker_id`` that the supervisor at ``supervisor`` handed out."""
    if local_host().sees(host_id) or not relay_port:
        return WorkerRoute(worker_id, address, None, f"direct unix socket {address}")
    # The relay is on the host this gateway reaches the supervisor by (the supervisor cannot know it).
    relay = f"{supervisor.rpartition(':')[0]}:{relay_port}"
    tls = " over mutual TLS" if settings.PLATFORM_SUPERVISOR_TLS is not None else ""
    description = f"relay via supervisor {supervisor} (relay {relay}{tls}) to {worker_id} on {host_name or host_id}"
    return WorkerRoute(worker_id, relay_target(worker_id), relay, description)


def lease_route(lease: WorkerLease) -> WorkerRoute:
    """The route of a ``runtime_client.WorkerLease``."""
    return worker_route(
        worker_id=lease.worker_id,
        address=lease.address,
        host_id=lease.host_id,
        host_name=lease.host_name,
        supervisor=lease.supervisor,
        relay_port=lease.relay_port,
    )


def open_channel(route: WorkerRoute, *, tls: TlsMaterial | None, secret: str = "") -> grpc.aio.Channel:
    """A new channel along ``route``, with the gateway's TLS material (or none: loopback) and secret."""
    if route.relay is None:
        return grpc.aio.insecure_channel(route.target, options=FAST_CHANNEL_OPTIONS)
    if tls is not None:
        # The relay presents its supervisor's certificate: check it for the supervisor's name.
        name = tls.server_name or route.relay.rpartition(":")[0].strip("[]")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
        )
        options = [
            *FAST_CHANNEL_OPTIONS,
            ("grpc.http_proxy", f"http://{route.relay}"),
            ("grpc.ssl_target_name_override", name),
        ]
        return grpc.aio.secure_channel(route.target, credentials, options=options)
    # Without TLS (loopback only), the shared secret, if any, goes in the CONNECT request.
    proxy = f"http://relay:{quote(secret, safe='')}@{route.relay}" if secret else f"http://{route.relay}"
    return grpc.aio.insecure_channel(route.target, options=[*FAST_CHANNEL_OPTIONS, ("grpc.http_proxy", proxy)])


@dataclass
class Channel:
    """A channel to one worker, its PPP stub, and whether its session is initialized."""

    channel: grpc.aio.Channel
    stub: ppp_grpc.PluginWorkerStub
    initialized: bool = False


class WorkerChannels:
    """gRPC channels to workers, one per worker and event loop, kept while the worker lives."""

    def __init__(self) -> None:
        self._channels: dict[tuple[int, str], Channel] = {}

    def get(self, route: WorkerRoute) -> Channel:
        key = (id(asyncio.get_running_loop()), route.key)
        found = self._channels.get(key)
        if found is None:
            tls, secret = settings.PLATFORM_SUPERVISOR_TLS, settings.PLATFORM_SUPERVISOR_SECRET
            channel = open_channel(route, tls=tls, secret=secret)
            found = self._channels[key] = Channel(channel, ppp_grpc.PluginWorkerStub(channel))
        return found

    def connected(self, route: WorkerRoute) -> bool:
        """Whether this loop has a channel along ``route`` that is connected now (no I/O)."""
        found = self._channels.get((id(asyncio.get_running_loop()), route.key))
        return found is not None and found.channel.get_state() == grpc.ChannelConnectivity.READY

    async def forget(self, route: WorkerRoute) -> None:
        found = self._channels.pop((id(asyncio.get_running_loop()), route.key), None)
        if found is not None:
            await found.channel.close()


worker_channels = WorkerChannels()

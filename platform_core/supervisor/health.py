"""The standard gRPC health service of a supervisor, alone on a port of its own.

``runsupervisor --health-listen 0.0.0.0:9094`` answers ``grpc.health.v1.Health/Check`` there in
plain text: SERVING while the supervisor runs, NOT_SERVING once it is stopping. Nothing else is
served on that port (no worker can be started or reached through it), so it may listen beyond
loopback without TLS: Kubernetes' native gRPC probes and other checkers cannot present a client
certificate. ``python -m platform_core.supervisor.health HOST:PORT`` is the same check as a
command (exit status 0 when serving), for Docker health checks.

``HealthCheckResponse{status}`` is two bytes on the wire; writing them here spares a dependency.
"""

from __future__ import annotations

import sys

import grpc

CHECK = "/grpc.health.v1.Health/Check"
# HealthCheckResponse: field 1 (status, varint) = 1 SERVING / 2 NOT_SERVING.
SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"


class HealthService(grpc.GenericRpcHandler):
    def __init__(self) -> None:
        self.serving = True

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        if details.method != CHECK:
            return None  # UNIMPLEMENTED (Watch included: probes only Check)
        return grpc.unary_unary_rpc_method_handler(self._check)

    async def _check(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return SERVING if self.serving else NOT_SERVING


async def serve_health(listen: str) -> tuple[grpc.aio.Server, HealthService]:
    """A started health server on ``listen`` (raises OSError when the port cannot be had)."""
    health = HealthService()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((health,))
    if server.add_insecure_port(listen) == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    return server, health


def probe(address: str, timeout_s: float = 3.0) -> bool:
    """Whether the supervisor whose health port is ``address`` says SERVING."""
    with grpc.insecure_channel(address) as channel:
        try:
            check: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(CHECK)
            return check(b"", timeout=timeout_s) == SERVING
        except grpc.RpcError:
            return False


if __name__ == "__main__":
    sys.exit(0 if probe(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9094") else 1)

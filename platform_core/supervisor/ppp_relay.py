"""The PPP relay: gateways on other hosts reach this supervisor's workers through it.

Workers have no network; their PPP server listens on a Unix socket that only processes sharing
this host's file system view can open. The relay is a TLS-terminating byte pipe, one connection
per gateway channel and worker:

1. the gateway's gRPC channel connects through the relay as through an HTTP proxy
   (``grpc.http_proxy``): ``CONNECT worker-20001.ppp-relay:1`` names the worker;
2. the relay answers 404 for anything but a live worker of this supervisor (407 for a wrong
   secret, when there is no TLS), else opens the worker's socket and answers 200;
3. with mutual TLS configured, the gateway's channel then does its TLS handshake *with the
   relay* (client certificate of the CA required, checked by Python's ``ssl`` so that every
   refusal is logged here), and the relay pipes the decrypted bytes to the worker's socket and
   back.

Nothing above TCP is parsed after the handshake: HTTP/2 frames, gRPC messages, deadlines
(``grpc-timeout``), cancellations (``RST_STREAM``) and the worker's status and trailers pass
through untouched, so a relayed worker behaves exactly as a local one, including a crash (its
socket closes, so does the gateway's connection: UNAVAILABLE, as locally). Measured against a
gRPC-level relay (decode and re-send each call and message in Python), this costs a third of
the added latency: docs/PERFORMANCE.md, "Workers on another host".

The relay does not care how a worker was obtained (allocation, pool, lease): only whose it is.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import os
import ssl
import tempfile
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from platform_core.supervisor.model import Worker

log = logging.getLogger(__name__)

# CONNECT authority: "<worker id>.ppp-relay:1" (the port is not used).
AUTHORITY_SUFFIX = ".ppp-relay"
# Largest CONNECT request accepted; also the connection's read buffer (asyncio pauses reading
# at twice this), so not smaller than a few HTTP/2 frames.
_HEAD_LIMIT = 64 * 1024
_HEAD_TIMEOUT_S = 10.0
_CHUNK = 256 * 1024


def relay_target(worker_id: str) -> str:
    """The gRPC target a gateway's channel names to reach ``worker_id`` through a relay."""
    return f"{worker_id}{AUTHORITY_SUFFIX}:1"


def server_ssl_context(cert: bytes, key: bytes, ca: bytes) -> ssl.SSLContext:
    """TLS of the relay: this supervisor's certificate; a client certificate of the CA required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl loads a certificate chain only from files: a private one, removed at once.
    fd, path = tempfile.mkstemp(prefix="relay-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(cert + b"\n" + key)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    context.load_verify_locations(cadata=ca.decode())
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])  # gRPC insists on HTTP/2 being negotiated
    return context


class PppRelay:
    def __init__(
        self, workers: dict[str, Worker], *, ssl_context: ssl.SSLContext | None = None, secret: str = ""
    ) -> None:
        # The supervisor's live table (worker id → Worker): read at each connection, never copied.
        self._workers = workers
        self._ssl = ssl_context
        # Checked in CONNECT only without TLS (with TLS it would cross the network in clear text
        # before the handshake; the client certificate authenticates instead).
        self._secret = secret if ssl_context is None else ""
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); the port listened on."""
        self._server = await asyncio.start_server(self._accept, host, port, limit=_HEAD_LIMIT)
        listening: int = self._server.sockets[0].getsockname()[1]
        return listening

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = cast("asyncio.Task[None]", asyncio.current_task())  # this very coroutine's task
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        try:
            await self._relay(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # the peer went away or sent garbage: nothing to answer
        finally:
            self._connections.discard(task)
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Any) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT_S)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[0] != "CONNECT":
            return await _answer(writer, 405, "only CONNECT <worker>.ppp-relay:1 is served here")
        if self._secret and not self._secret_ok(header_lines):
            log.warning("relay refused %s: missing or wrong supervisor secret", peer)
            return await _answer(writer, 407, "missing or wrong supervisor secret")
        worker_id = parts[1].rsplit(":", 1)[0].removesuffix(AUTHORITY_SUFFIX)
        worker = self._workers.get(worker_id)
        if worker is None or not worker.alive or not worker.address.startswith("unix://"):
            log.warning("relay refused %s: %s is not a live worker of this supervisor", peer, worker_id)
            return await _answer(writer, 404, f"{worker_id} is not a live worker of this supervisor")
        try:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(
                worker.address.removeprefix("unix://"), limit=_CHUNK
            )
        except OSError as exc:
            return await _answer(writer, 502, f"{worker_id} does not accept connections: {exc}")
        try:
            await _answer(writer, 200, "Connection established")
            if self._ssl is not None:
                try:
                    await writer.start_tls(self._ssl)
                except (ssl.SSLError, ConnectionError) as exc:
                    log.warning("relay refused %s (TLS handshake for %s): %s", peer, worker_id, exc)
                    return None
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()
        return None

    def _secret_ok(self, header_lines: list[str]) -> bool:
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "proxy-authorization":
                scheme, _, encoded = value.strip().partition(" ")
                with contextlib.suppress(ValueError):
                    presented = base64.b64decode(encoded).decode().partition(":")[2]
                    return scheme.lower() == "basic" and hmac.compare_digest(presented, self._secret)
        return False


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode("latin-1", "replace"))
    await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then end the other side's stream too: a half-close where it can
    (sockets), else at once (TLS: a graceful close waits up to 30 s for the peer's close_notify,
    and a gateway would not see its worker die before then)."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
            return
    except (ConnectionError, ssl.SSLError):
        pass
    writer.transport.abort()

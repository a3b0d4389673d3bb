"""The gateway's HTTP server: uvicorn (uvloop + httptools), one process per core on one port.

Chosen by measurement (``bench/hotpath.py``, docs/PERFORMANCE.md): uvicorn serves the bare ASGI
app several times faster than daphne and about as fast as granian, and unlike granian its
protocol is Python we can extend, which the error contract needs. Before the application runs,
an HTTP server answers some requests itself (a raw non-UTF-8 byte in the path, a control
character in a header, a broken request line): uvicorn answers those with a ``text/plain`` 400;
``JsonHttpToolsProtocol`` answers in the contract's shape instead, and refuses request heads larger than
``API_MAX_HEADER_BYTES`` (httptools itself sets no limit) with a JSON 431.

``GATEWAY_SERVER=granian`` serves with granian (Rust; its own refusals of malformed requests are
plain text, and it sets no head limit of ours), ``GATEWAY_SERVER=daphne`` with daphne (one process).
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

if TYPE_CHECKING:
    from platform_core.gateway.errors import GatewayError

# Imported by each uvicorn worker process before Django is set up (the protocol class travels to
# it pickled): nothing here may import a model at module level.
log = logging.getLogger(__name__)

APPLICATION = "platform_core.asgi:application"


def _json_response(error: GatewayError) -> bytes:
    body = json.dumps(error.body()).encode()
    status = STATUS_LINE.get(error.http_status) or f"HTTP/1.1 {error.http_status} Error\r\n".encode()
    head = [
        status,
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n",
        b"\r\n",
    ]
    return b"".join(head) + body


class JsonHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the server's own refusals in the error contract's shape."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._max_head = settings.PLATFORM_MAX_HEADER_BYTES

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_bytes = -1  # the head is read: the body is bounded by the application
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._head_bytes >= 0:
            from platform_core.gateway import errors

            end = data.find(b"\r\n\r\n")  # the head ends here; what follows is the body
            self._head_bytes += len(data) if end < 0 else end + 4
            if self._head_bytes > self._max_head:
                self._refuse(
                    errors.HeadersTooLarge(
                        f"the request line and headers are larger than {self._max_head} bytes (API_MAX_HEADER_BYTES)"
                    )
                )
                return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        from platform_core.gateway import errors

        self._refuse(errors.BadRequest(f"the HTTP request is malformed and was not read ({msg.rstrip('.')})"))

    def _refuse(self, error: GatewayError) -> None:
        log.warning("refused a request before the application: %s", error.message)
        if not self.transport.is_closing():
            self.transport.write(_json_response(error))
            self.transport.close()


def processes() -> int:
    """How many gateway processes to run: GATEWAY_PROCESSES, or one per core when live events can
    cross processes (a Redis channel layer), else one (the in-memory layer is per process)."""
    if settings.PLATFORM_GATEWAY_PROCESSES:
        return settings.PLATFORM_GATEWAY_PROCESSES
    if settings.PLATFORM_REDIS_URL:
        return os.cpu_count() or 1
    return 1


def serve(*, bind: str, port: int, workers: int) -> None:
    """Run uvicorn (this process supervises ``workers`` processes sharing one listening socket)."""
    import uvicorn

    uvicorn.run(
        APPLICATION,
        host=bind,
        port=port,
        workers=workers if workers > 1 else None,
        http=JsonHttpToolsProtocol,
        loop="uvloop",
        ws="websockets-sansio",
        lifespan="on",
        log_level=settings.LOGGING["root"]["level"].lower(),
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


def granian_command(*, bind: str, port: int, workers: int) -> list[str]:
    """The command line that serves the gateway with granian (``workers`` processes, one socket)."""
    import sys

    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        bind,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--no-access-log",
        "--log-level",
        settings.LOGGING["root"]["level"].lower(),
        APPLICATION,
    ]

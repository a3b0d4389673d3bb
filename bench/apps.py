"""The floors of ``bench/hotpath.py``: ASGI apps that do only part of what the gateway does.

* ``bare``: reads the JSON body, subtracts, answers JSON (what any server costs at the least);
* ``parts``: the same, but the subtraction is one PPP Invoke to a warm SDK worker on a Unix socket
  (``PARTS_WORKER_SOCKET``), over one grpc.aio channel: no auth, no trace, no database, no
  supervisor. The gateway cannot be faster than this on the same server.

Served by uvicorn, daphne or granian (``python -m uvicorn bench.apps:bare`` …).
"""

from __future__ import annotations

import json
import os
from typing import Any

HEADERS = [(b"content-type", b"application/json")]


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def bare(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    arguments = json.loads(await _body(receive))
    await _answer(send, 200, {"result": float(arguments["operand1"] - arguments["operand2"])})


class _Worker:
    """One channel and stub to the worker, made on first use in the server's event loop."""

    stub: Any = None

    @classmethod
    async def get(cls) -> Any:
        if cls.stub is None:
            import grpc

            from platform_core.rpc import ppp_grpc, ppp_pb2

            channel = grpc.aio.insecure_channel(f"unix://{os.environ['PARTS_WORKER_SOCKET']}")
            cls.stub = ppp_grpc.PluginWorkerStub(channel)
            await cls.stub.Init(ppp_pb2.InitRequest(), wait_for_ready=True, timeout=10)
        return cls.stub


async def parts(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    from platform_core.rpc import ppp_pb2

    body = await _body(receive)
    stub = await _Worker.get()
    output = None
    async for message in stub.Invoke(ppp_pb2.InvokeRequest(primitive="subtract_numbers", arguments=body), timeout=10):
        if message.WhichOneof("kind") == "completed":
            output = message.completed.output
    if output is None:
        return await _answer(send, 502, {"error": "no completed message"})
    await _answer(send, 200, json.loads(output))

"""Binding a stem cell to its plugin: one JSON line over the stem cell's control socket.

A stem cell (``stemcells.py``) is a worker program started with ``--stem CONTROL --unix SOCKET``:
it serves PPP on SOCKET at once, with no plugin (Health: NOT_SERVING), and listens on CONTROL,
a Unix socket in its private directory (on the docker backend, the bind-mounted one). The
supervisor connects once and sends ``{"entrypoint": ..., "concurrency": N, "limits": {...}}``; the worker loads
the plugin, removes CONTROL and answers ``ok`` (or ``error MESSAGE`` and exits). Both SDKs
(Java, Python) speak it; nothing else of the platform does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from platform_core.supervisor.backends import WorkerStartError
from platform_core.supervisor.model import PluginRef

CONTROL_NAME = "stem.sock"
# Loading a plugin is an import (Python) or a class lookup (Java): well under this.
BIND_TIMEOUT_S = 10.0


async def bind(control: Path, plugin: PluginRef, *, address_space: int = 0, timeout_s: float = BIND_TIMEOUT_S) -> None:
    """Tell the stem cell listening on ``control`` to load ``plugin``; raises WorkerStartError
    when it cannot (bad entrypoint, the stem cell died).

    ``limits`` in the message are rlimits the worker sets on itself before it loads the plugin
    (lowering one's own limits needs no privilege, where setting another uid's needs
    CAP_SYS_RESOURCE): its address space (0: none) and CPU seconds from now (0: none). The
    Python SDK applies them; the Java SDK cannot (the supervisor sets its CPU seconds)."""
    message = {
        "entrypoint": plugin.entrypoint,
        "concurrency": plugin.pool.max_concurrency if plugin.pool else 1,
        "limits": {"address_space": address_space, "cpu_seconds": plugin.limits.cpu_seconds},
    }
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(str(control))
            try:
                writer.write(json.dumps(message).encode() + b"\n")
                await writer.drain()
                answer = (await reader.readline()).decode("utf-8", errors="replace").strip()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        raise WorkerStartError(f"the stem cell did not bind {plugin.name} within {timeout_s:g} s") from None
    except OSError as exc:
        raise WorkerStartError(f"cannot reach the stem cell's control socket: {exc}") from exc
    if answer != "ok":
        problem = answer.removeprefix("error").strip() or "it closed the connection"
        raise WorkerStartError(f"the stem cell could not load {plugin.entrypoint!r}: {problem}")

"""A worker the gateway could not connect to is unreachable (503, retry), not lost (502).

Issue 11, item 2: under a burst, the gateway's connection to a healthy worker's socket "timed out
before receiving SETTINGS frame" and the client got ``502 worker_lost``. These tests put real Unix
sockets where the worker's would be: one that accepts connections and never speaks HTTP/2 (the
overloaded worker of the burst), and one that nothing listens on.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_core.gateway import errors
from platform_core.gateway.ppp_session import WorkerLog, session_run
from platform_core.gateway.worker_route import WorkerRoute, worker_channels
from platform_core.invocations.trace import Trace
from platform_core.invocations.vocabulary import EventKind as K
from platform_core.registry.builtin import runtime_fields
from platform_core.registry.models import PluginSpec, Runtime
from platform_core.runtimes import BUILTIN_RUNTIMES
from platform_core.tenancy.callers import Caller


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ppc-", dir="/tmp") as path:
        yield Path(path)


@pytest.fixture
def silent_worker(socket_dir: Path) -> Iterator[Path]:
    """A Unix socket that accepts connections and never answers (no HTTP/2 SETTINGS frame)."""
    path = socket_dir / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()
    assert accepted, "the gateway never tried to connect"


async def _run(path: Path, budget_s: float) -> tuple[Trace, float, BaseException]:
    route = WorkerRoute("worker-1", f"unix://{path}", None, f"direct unix socket unix://{path}")
    runtime = Runtime(name="python", **runtime_fields(BUILTIN_RUNTIMES["python"]))
    plugin = PluginSpec(name="subtract_numbers", runtime=runtime, entrypoint="plugins.subtract_numbers:plugin")
    trace = Trace("00000000-0000-0000-0000-000000000002", publish=False)
    started = time.monotonic()
    try:
        with pytest.raises(errors.GatewayError) as raised:
            await session_run(
                route=route,
                plugin=plugin,
                arguments={"operand1": 1, "operand2": 1},
                caller=Caller(tenant_id="acme"),
                trace=trace,
                worker_log=WorkerLog(1024),
                connect_deadline=started + budget_s,
            )
    finally:
        await worker_channels.forget(route)
    return trace, time.monotonic() - started, raised.value


async def test_a_worker_that_accepts_but_never_answers_is_503_unreachable_not_lost(silent_worker):
    _assert_unreachable(*await _run(silent_worker, budget_s=1.0))


async def test_a_worker_socket_nobody_listens_on_is_503_unreachable_not_lost(socket_dir):
    _assert_unreachable(*await _run(socket_dir / "nobody.sock", budget_s=1.0))


def _assert_unreachable(trace: Trace, waited: float, error: BaseException) -> None:
    assert isinstance(error, errors.WorkerUnreachable), repr(error)
    assert (error.http_status, error.code, error.headers["Retry-After"]) == (503, "worker_unreachable", "1")
    assert "nothing ran" in error.message
    assert 0.9 <= waited < 5, "the connection is retried until the allocation's deadline, not beyond"
    kinds = [event.kind for event in trace.events]
    assert K.CONNECT_RETRY in kinds and K.WORKER_LOST not in kinds
    assert K.INIT_REQUEST not in kinds and K.INVOKE_REQUEST not in kinds  # nothing was sent


def test_worker_unreachable_is_recorded_as_unavailable_and_invites_a_retry():
    error = errors.WorkerUnreachable("x")
    assert (error.status, error.http_status, int(error.headers["Retry-After"])) == ("unavailable", 503, 1)

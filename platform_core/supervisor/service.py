"""The supervisor's logic: allocate, probe, hand out, release and stop workers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from platform_core.rpc import FAST_CHANNEL_OPTIONS, ppp_grpc, ppp_pb2
from platform_core.supervisor.backends import WorkerBackend, WorkerStartError
from platform_core.supervisor.model import BoundedOutput, Event, PluginRef, State, Worker

log = logging.getLogger(__name__)

# The seed's worker id ranges: worker-10001... for java, worker-20001... for python.
WORKER_ID_BASE = {"java": 10000, "python": 20000}


class SupervisorError(Exception):
    """Base of the errors the gRPC adapter turns into status codes."""


class CapacityExhausted(SupervisorError):
    pass


class UnknownWorker(SupervisorError):
    pass


class InvalidRequest(SupervisorError):
    pass


class WorkerNotReady(SupervisorError):
    """The worker did not answer its readiness probe in time."""


class WorkerFailedToStart(SupervisorError):
    """The backend could not start the worker, or it died before it was ready."""


@dataclass
class Outcome:
    """What a release or cancel reports back: the lifecycle events and the worker's output."""

    events: list[Event]
    output: str = ""
    output_truncated: bool = False
    exit_code: int = 0


@dataclass
class _Collector:
    events: list[Event] = field(default_factory=list)


class Supervisor:
    def __init__(
        self,
        *,
        runtime: str,
        supervisor_id: str,
        backends: dict[str, WorkerBackend],
        default_backend: str,
        max_workers: int = 32,
        ready_timeout_s: float = 15.0,
        stop_grace_s: float = 2.0,
        output_limit: int = 64 * 1024,
    ) -> None:
        if default_backend not in backends:
            raise ValueError(f"default backend {default_backend!r} is not among {sorted(backends)}")
        self.runtime = runtime
        self.supervisor_id = supervisor_id
        self.backends = backends
        self.default_backend = default_backend
        self.max_workers = max_workers
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.output_limit = output_limit
        self.workers: dict[str, Worker] = {}
        self._ids = itertools.count(WORKER_ID_BASE.get(runtime, 30000) + 1)
        self._watchers: set[asyncio.Queue[Event | None]] = set()
        self._closing = False

    # --- events ---------------------------------------------------------------------------

    def _emit(self, worker: Worker, state: State, detail: str, collector: _Collector | None) -> Event:
        worker.state = state
        event = Event(worker.worker_id, state, time.time_ns(), detail, worker.plugin.name, worker.backend)
        if collector is not None:
            collector.events.append(event)
        for queue in list(self._watchers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a watcher that does not keep up is dropped, not waited for
                self._watchers.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)
        return event

    async def watch(self) -> AsyncIterator[Event]:
        """Every lifecycle event from now on, after one snapshot event per live worker."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=10_000)
        for worker in list(self.workers.values()):
            queue.put_nowait(
                Event(worker.worker_id, worker.state, time.time_ns(), "snapshot", worker.plugin.name, worker.backend)
            )
        self._watchers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._watchers.discard(queue)

    # --- allocation -----------------------------------------------------------------------

    async def allocate(self, plugin: PluginRef, *, timeout_s: float | None = None) -> tuple[Worker, list[Event]]:
        """Start a worker for ``plugin`` and wait until it answers its Health probe."""
        if self._closing:
            raise CapacityExhausted("supervisor is shutting down")
        if plugin.runtime and plugin.runtime != self.runtime:
            raise InvalidRequest(f"this is the {self.runtime} supervisor; {plugin.name} needs {plugin.runtime}")
        backend_name = plugin.backend or self.default_backend
        backend = self.backends.get(backend_name)
        if backend is None:
            raise InvalidRequest(
                f"backend {backend_name!r} is not enabled on this supervisor "
                f"(enabled: {', '.join(sorted(self.backends))})"
            )
        if len(self.workers) >= self.max_workers:
            raise CapacityExhausted(
                f"all {self.max_workers} worker slots of supervisor {self.supervisor_id} are in use"
            )
        worker = Worker(f"worker-{next(self._ids)}", plugin, backend_name, output=BoundedOutput(self.output_limit))
        self.workers[worker.worker_id] = worker
        collector = _Collector()
        self._emit(worker, State.REQUESTED, f"allocate {plugin.name}", collector)
        self._emit(
            worker, State.ALLOCATING, f"{backend_name} backend, slot {len(self.workers)}/{self.max_workers}", collector
        )
        started = time.monotonic()
        try:
            socket = await backend.start(worker, lambda w, s, d: self._emit(w, s, d, collector))
            await self._probe(worker, backend, socket, started + (timeout_s or self.ready_timeout_s))
        except BaseException as exc:  # includes cancellation by the caller: never leave the worker behind
            detail = str(exc) or type(exc).__name__
            self._emit(worker, State.FAILED, detail, collector)
            await self._dispose(worker, backend, force=True, collector=collector)
            if isinstance(exc, WorkerStartError):
                raise WorkerFailedToStart(detail) from exc
            raise
        ready_ms = (time.monotonic() - started) * 1000
        self._emit(worker, State.READY, f"Health SERVING after {ready_ms:.0f} ms", collector)
        worker.runtime_state["monitor"] = asyncio.create_task(self._monitor(worker, backend))
        self._emit(worker, State.EXECUTING, "handed to gateway", collector)
        return worker, collector.events

    async def _probe(self, worker: Worker, backend: WorkerBackend, socket: Path, deadline: float) -> None:
        """Wait until the worker's socket exists and PPP Health says SERVING (no fixed sleeps)."""
        delay = 0.002
        async with grpc.aio.insecure_channel(worker.address, options=FAST_CHANNEL_OPTIONS) as channel:
            stub = ppp_grpc.PluginWorkerStub(channel)
            while True:
                if (code := backend.exit_code(worker)) is not None:
                    await backend.wait(worker)
                    tail = worker.output.text()[-2000:].strip()
                    raise WorkerStartError(
                        f"worker exited with code {code} before it was ready" + (f": {tail}" if tail else "")
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkerNotReady(f"worker not ready after {self.ready_timeout_s:.1f} s")
                if socket.exists():  # noqa: ASYNC240 — one stat(), cheaper than a thread hop
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        reply = await stub.Health(ppp_pb2.HealthRequest(), timeout=min(remaining, 1.0))
                        if reply.status == ppp_pb2.HealthResponse.SERVING:
                            return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.01)

    async def _monitor(self, worker: Worker, backend: WorkerBackend) -> None:
        """Notice a worker that dies on its own (crash, OOM kill) while in use."""
        code = await backend.wait(worker)
        worker.exit_code = code
        if worker.state not in {State.RELEASING, State.STOPPING, State.REMOVED, State.FAILED}:
            self._emit(worker, State.FAILED, f"worker exited unexpectedly with code {code}", None)

    # --- release --------------------------------------------------------------------------

    def _get(self, worker_id: str) -> Worker:
        try:
            return self.workers[worker_id]
        except KeyError:
            raise UnknownWorker(f"no worker {worker_id!r} on supervisor {self.supervisor_id}") from None

    async def release(self, worker_id: str, *, reason: str = "") -> Outcome:
        """The gateway is done with the worker: stop it gracefully and remove it."""
        worker = self._get(worker_id)
        collector = _Collector()
        if worker.state != State.FAILED:
            self._emit(worker, State.COMPLETED, reason or "released", collector)
        self._emit(worker, State.RELEASING, reason or "released", collector)
        return await self._dispose(worker, self.backends[worker.backend], force=False, collector=collector)

    async def cancel(self, worker_id: str, *, reason: str = "") -> Outcome:
        """Abort: force-stop the worker now (timeouts, cancelled requests)."""
        worker = self._get(worker_id)
        collector = _Collector()
        if worker.state != State.FAILED:
            self._emit(worker, State.FAILED, f"cancelled: {reason or 'no reason given'}", collector)
        return await self._dispose(worker, self.backends[worker.backend], force=True, collector=collector)

    async def _dispose(self, worker: Worker, backend: WorkerBackend, *, force: bool, collector: _Collector) -> Outcome:
        if worker.pid or worker.runtime_state:
            how = "force-stop" if force else f"SIGTERM, SIGKILL after {self.stop_grace_s:.0f} s"
            self._emit(worker, State.STOPPING, how, collector)
            try:
                if force:
                    code = await backend.kill(worker)
                else:
                    code = await backend.stop(worker, grace_s=self.stop_grace_s)
            except Exception as exc:
                log.exception("stopping %s failed", worker.worker_id)
                code = -1
                self._emit(worker, State.FAILED, f"stop failed: {exc}", collector)
        else:
            code = -1
        worker.exit_code = code
        self.workers.pop(worker.worker_id, None)
        if monitor := worker.runtime_state.get("monitor"):
            monitor.cancel()
        self._emit(worker, State.REMOVED, f"exit code {code}", collector)
        return Outcome(collector.events, worker.output.text(), worker.output.truncated, code)

    # --- life of the supervisor -----------------------------------------------------------

    async def start(self) -> int:
        """Reap what an earlier life left behind; how many orphans were removed."""
        reaped = 0
        for backend in self.backends.values():
            reaped += await backend.reap_orphans()
        if reaped:
            log.warning("removed %d orphan worker(s) of an earlier life of %s", reaped, self.supervisor_id)
        return reaped

    async def shutdown(self) -> None:
        """Stop every worker (gracefully, then by force) and end all watch streams."""
        self._closing = True
        await asyncio.gather(
            *(self.release(worker_id, reason="supervisor shutting down") for worker_id in list(self.workers)),
            return_exceptions=True,
        )
        for queue in list(self._watchers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

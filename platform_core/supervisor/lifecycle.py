"""A worker's life, as the seed's state diagram draws it: Requested → Allocating → Spawning →
Starting → Ready (probed, never slept) → … → Stopping → Removed, or Failed.

``Lifecycle`` starts workers on a backend, probes them with PPP ``Health`` until they serve,
notices those that die on their own, stops and removes them, and tells every watcher about each
step. Allocation policy (ephemeral, pools, leases) is the supervisor's and the pools'; this
module only knows how one worker lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from platform_core.rpc import FAST_CHANNEL_OPTIONS, ppp_grpc, ppp_pb2
from platform_core.runtimes import worker_id_base
from platform_core.supervisor.backends import WorkerBackend, WorkerStartError
from platform_core.supervisor.errors import CapacityExhausted, InvalidRequest, WorkerFailedToStart, WorkerNotReady
from platform_core.supervisor.model import BoundedOutput, Event, ExitCause, PluginRef, State, Worker

log = logging.getLogger(__name__)


@dataclass
class Collector:
    """The lifecycle events of one call (an allocation, a release), for the caller's trace."""

    events: list[Event] = field(default_factory=list)


@dataclass
class Disposal:
    """How a worker was stopped: the events, its (bounded) output and exit."""

    events: list[Event]
    output: str = ""
    output_truncated: bool = False
    exit_code: int = 0
    # Set when the worker ended on its own (killed at a limit, crashed) before it was stopped.
    exit_cause: ExitCause | None = None


class Lifecycle:
    def __init__(
        self,
        *,
        runtime: str,
        supervisor_id: str,
        backends: dict[str, WorkerBackend],
        default_backend: str,
        ready_timeout_s: float,
        stop_grace_s: float,
        output_limit: int,
    ) -> None:
        if default_backend not in backends:
            raise ValueError(f"default backend {default_backend!r} is not among {sorted(backends)}")
        self.runtime = runtime
        self.supervisor_id = supervisor_id
        self.backends = backends
        self.default_backend = default_backend
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.output_limit = output_limit
        self.workers: dict[str, Worker] = {}
        self.closing = False
        self._ids = itertools.count(worker_id_base(runtime) + 1)
        self._watchers: set[asyncio.Queue[Event | None]] = set()
        # Each live worker's exit monitor (the supervisor's own tasks, not the backend's state).
        self._monitors: dict[str, asyncio.Task[None]] = {}
        # Called when a worker exits on its own (the supervisor revokes its leases).
        self.on_exit: Callable[[Worker], None] = lambda worker: None
        # Called once a worker is removed (stem cells refill after the one taken is gone).
        self.on_removed: Callable[[Worker], None] = lambda worker: None

    # --- events ---------------------------------------------------------------------------

    def emit(self, worker: Worker, state: State, detail: str, collector: Collector | None) -> Event:
        worker.state = state
        event = Event(
            worker.worker_id, state, time.time_ns(), detail, worker.plugin.name, worker.backend, worker.tenant
        )
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
                Event(
                    worker.worker_id,
                    worker.state,
                    time.time_ns(),
                    "snapshot",
                    worker.plugin.name,
                    worker.backend,
                    worker.tenant,
                )
            )
        self._watchers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._watchers.discard(queue)

    def end_watches(self) -> None:
        for queue in list(self._watchers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    # --- start ----------------------------------------------------------------------------

    def backend_for(self, plugin: PluginRef) -> tuple[str, WorkerBackend]:
        if self.closing:
            raise CapacityExhausted("supervisor is shutting down")
        if plugin.runtime and plugin.runtime != self.runtime:
            raise InvalidRequest(f"this is the {self.runtime} supervisor; {plugin.name} needs {plugin.runtime}")
        name = plugin.backend or self.default_backend
        backend = self.backends.get(name)
        if backend is None:
            raise InvalidRequest(
                f"backend {name!r} is not enabled on this supervisor (enabled: {', '.join(sorted(self.backends))})"
            )
        return name, backend

    async def start(
        self, plugin: PluginRef, *, collector: Collector | None, timeout_s: float | None, slot: str, tenant: str = ""
    ) -> Worker:
        """Spawn a worker and wait until it answers its Health probe (Requested ... Ready)."""
        backend_name, backend = self.backend_for(plugin)
        worker = Worker(f"worker-{next(self._ids)}", plugin, backend_name, output=BoundedOutput(self.output_limit))
        worker.pooled, worker.tenant = plugin.pool is not None, tenant
        self.workers[worker.worker_id] = worker
        self.emit(worker, State.REQUESTED, f"allocate {plugin.name}", collector)
        self.emit(worker, State.ALLOCATING, f"{backend_name} backend, {slot}, spawned", collector)
        started = time.monotonic()

        def emit(w: Worker, s: State, d: str) -> None:
            self.emit(w, s, d, collector)

        try:
            socket = await backend.start(worker, emit)
            await self._probe(worker, backend, socket, started + (timeout_s or self.ready_timeout_s))
        except BaseException as exc:  # includes cancellation by the caller: never leave the worker behind
            await self._abandon(worker, exc, collector)
            raise
        ready_ms = (time.monotonic() - started) * 1000
        self.emit(worker, State.READY, f"Health SERVING after {ready_ms:.0f} ms", collector)
        self._monitors[worker.worker_id] = asyncio.create_task(self._monitor(worker, backend))
        return worker

    # --- stem cells -----------------------------------------------------------------------

    async def start_stem(self, ref: PluginRef, *, timeout_s: float | None = None) -> Worker:
        """Start a stem cell of ``ref``'s runtime, backend and limit class, and wait until it can
        be bound (Requested ... Stem cell). It holds no worker slot until it is bound."""
        backend_name, backend = self.backend_for(ref)
        worker = Worker(f"worker-{next(self._ids)}", ref, backend_name, output=BoundedOutput(self.output_limit))
        worker.stem_cell = True
        self.workers[worker.worker_id] = worker
        self.emit(worker, State.REQUESTED, "stem cell: started ahead, no plugin", None)
        self.emit(worker, State.ALLOCATING, f"{backend_name} backend, stem cell", None)
        started = time.monotonic()
        try:

            def emit(w: Worker, s: State, d: str) -> None:
                self.emit(w, s, d, None)

            control = await backend.start_stem(worker, emit)
            await self._await_control(worker, backend, control, started + (timeout_s or self.ready_timeout_s))
            await self._exercise(worker)
        except BaseException as exc:
            self.emit(worker, State.FAILED, str(exc) or type(exc).__name__, None)
            await self.dispose(worker, force=True, collector=Collector())
            raise
        worker.runtime_state["stem_ready_at"] = time.monotonic()
        ready_ms = (time.monotonic() - started) * 1000
        self.emit(worker, State.STEM_CELL, f"ready after {ready_ms:.0f} ms, waiting for a plugin", None)
        self._monitors[worker.worker_id] = asyncio.create_task(self._monitor(worker, backend))
        return worker

    async def _exercise(self, worker: Worker) -> None:
        """One PPP session with the unbound stem cell (Health, Init, Invoke: each answered "not
        bound"), so that what its first real session needs (a JVM's connection, HTTP/2 and
        message classes: ~0.3 s) is loaded now rather than at binding."""
        async with grpc.aio.insecure_channel(worker.address, options=FAST_CHANNEL_OPTIONS) as channel:
            stub = ppp_grpc.PluginWorkerStub(channel)
            health = await stub.Health(ppp_pb2.HealthRequest(), timeout=self.ready_timeout_s)
            if health.status == ppp_pb2.HealthResponse.SERVING:
                raise WorkerStartError("a stem cell must not serve before it is bound")
            await stub.Init(ppp_pb2.InitRequest(), timeout=self.ready_timeout_s)
            async for _ in stub.Invoke(ppp_pb2.InvokeRequest(primitive="-"), timeout=self.ready_timeout_s):
                pass

    async def _await_control(self, worker: Worker, backend: WorkerBackend, control: Path, deadline: float) -> None:
        """Wait until the stem cell's control socket exists (it serves PPP by then)."""
        delay = 0.002
        while not control.exists():  # noqa: ASYNC240 — one stat(), cheaper than a thread hop
            if (code := backend.exit_code(worker)) is not None:
                await backend.wait(worker)
                tail = worker.output.text()[-2000:].strip()
                raise WorkerStartError(f"stem cell exited with code {code}" + (f": {tail}" if tail else ""))
            if time.monotonic() > deadline:
                raise WorkerNotReady(f"stem cell not ready after {self.ready_timeout_s:.1f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def bind(
        self,
        worker: Worker,
        plugin: PluginRef,
        *,
        collector: Collector | None,
        timeout_s: float | None,
        slot: str,
        tenant: str = "",
    ) -> Worker:
        """Bind a ready stem cell to ``plugin`` (its limits, then its code) and wait until it
        answers Health (Requested ... Ready), as ``start`` does for a spawned worker."""
        backend = self.backends[worker.backend]
        waited = time.monotonic() - worker.runtime_state.get("stem_ready_at", time.monotonic())
        worker.plugin, worker.tenant, worker.stem_cell = plugin, tenant, False
        worker.started_ns = time.time_ns()
        self.emit(worker, State.REQUESTED, f"allocate {plugin.name}", collector)
        how = f"{worker.backend} backend, {slot}, from stem cell (ready {waited:.1f} s)"
        self.emit(worker, State.ALLOCATING, how, collector)
        started = time.monotonic()
        self.emit(worker, State.STARTING, f"bind stem cell to {plugin.name}: limits applied, plugin loaded", collector)
        try:
            await backend.bind(worker, plugin)
            socket = Path(worker.address.removeprefix("unix://"))
            await self._probe(worker, backend, socket, started + (timeout_s or self.ready_timeout_s))
        except BaseException as exc:  # includes cancellation by the caller: never leave the worker behind
            await self._abandon(worker, exc, collector)
            raise
        ready_ms = (time.monotonic() - started) * 1000
        self.emit(worker, State.READY, f"Health SERVING after {ready_ms:.0f} ms (from binding)", collector)
        return worker

    async def _abandon(self, worker: Worker, exc: BaseException, collector: Collector | None) -> None:
        """A start or binding failed (or its caller gave up): FAILED, force-removed; a start error
        is raised as WorkerFailedToStart (the caller re-raises anything else)."""
        detail = str(exc) or type(exc).__name__
        if worker.state != State.FAILED:  # its monitor may have seen it die first
            self.emit(worker, State.FAILED, detail, collector)
        await self.dispose(worker, force=True, collector=collector or Collector())
        if isinstance(exc, WorkerStartError):
            raise WorkerFailedToStart(detail) from exc

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

    async def health(self, worker: Worker) -> bool:
        """One PPP Health probe of a running worker."""
        try:
            async with grpc.aio.insecure_channel(worker.address, options=FAST_CHANNEL_OPTIONS) as channel:
                reply = await ppp_grpc.PluginWorkerStub(channel).Health(ppp_pb2.HealthRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == ppp_pb2.HealthResponse.SERVING)

    # --- a worker that ends on its own ----------------------------------------------------

    async def _monitor(self, worker: Worker, backend: WorkerBackend) -> None:
        """Notice a worker that dies on its own (crash, OOM kill) while in use."""
        code = await backend.wait(worker)
        worker.exit_code = code
        settled = {State.RELEASING, State.STOPPING, State.REMOVED, State.FAILED}
        if worker.state not in settled:
            worker.exited_unasked = True
            cause = await self.exit_cause(worker, code)
            if worker.state not in settled:  # a release may have begun while the cause was looked up
                detail = f"worker exited unexpectedly with code {code}" + (f": {cause.detail}" if cause else "")
                self.emit(worker, State.FAILED, detail, None)
                self.on_exit(worker)

    async def cause_if_exited(self, worker: Worker, *, wait_s: float = 0.5) -> ExitCause | None:
        """Why a worker that a caller reports broken ended, if it did end on its own (waiting a
        moment for its exit to be noticed: the caller may see the connection drop first)."""
        if worker.exit_code is None and (monitor := self._monitors.get(worker.worker_id)) is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(monitor), wait_s)
        if worker.exit_code is None or not worker.exited_unasked:
            return None
        return await self.exit_cause(worker, worker.exit_code)

    async def exit_cause(self, worker: Worker, code: int) -> ExitCause | None:
        """Why the worker ended on its own, if it did."""
        try:
            return await self.backends[worker.backend].exit_cause(worker, code)
        except Exception:
            log.exception("cannot tell why %s exited", worker.worker_id)
            return None

    # --- stop -----------------------------------------------------------------------------

    async def dispose(self, worker: Worker, *, force: bool, collector: Collector) -> Disposal:
        """Stop the worker (SIGTERM then SIGKILL, or at once with ``force``) and remove it."""
        backend = self.backends[worker.backend]
        if worker.pid or worker.runtime_state:
            how = "force-stop" if force else f"SIGTERM, SIGKILL after {self.stop_grace_s:.0f} s"
            self.emit(worker, State.STOPPING, how, collector)
            try:
                code = await backend.kill(worker) if force else await backend.stop(worker, grace_s=self.stop_grace_s)
            except Exception as exc:
                log.exception("stopping %s failed", worker.worker_id)
                code = -1
                self.emit(worker, State.FAILED, f"stop failed: {exc}", collector)
        else:
            code = -1
        worker.exit_code = code
        self.workers.pop(worker.worker_id, None)
        if monitor := self._monitors.pop(worker.worker_id, None):
            monitor.cancel()
        cause = await self.exit_cause(worker, code) if code != -1 else None
        self.emit(worker, State.REMOVED, f"exit code {code}" + (f" ({cause.detail})" if cause else ""), collector)
        self.on_removed(worker)
        return Disposal(collector.events, worker.output.text(), worker.output.truncated, code, cause)

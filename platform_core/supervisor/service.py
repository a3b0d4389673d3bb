"""The supervisor's logic: allocate, probe, hand out, release and stop workers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from platform_core.rpc import FAST_CHANNEL_OPTIONS, ppp_grpc, ppp_pb2
from platform_core.runtimes import worker_id_base
from platform_core.supervisor.backends import WorkerBackend, WorkerStartError
from platform_core.supervisor.model import (
    BoundedOutput,
    Event,
    ExitCause,
    LeaseOwner,
    PluginRef,
    PoolSpec,
    State,
    Worker,
)

log = logging.getLogger(__name__)


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
    # Set when the worker ended on its own (killed at a limit, crashed) before it was stopped.
    exit_cause: ExitCause | None = None


@dataclass
class _Collector:
    events: list[Event] = field(default_factory=list)


class Pool:
    """The warm workers of one plugin."""

    def __init__(self, plugin: PluginRef) -> None:
        self.plugin = plugin
        self.workers: list[Worker] = []
        self.starting = 0
        self.waiters: deque[asyncio.Future[Worker]] = deque()
        self.wake = asyncio.Event()
        self.maintainer: asyncio.Task[None] | None = None

    @property
    def spec(self) -> PoolSpec:
        assert self.plugin.pool is not None
        return self.plugin.pool

    @property
    def size(self) -> int:
        return len(self.workers) + self.starting

    @staticmethod
    def usable(worker: Worker) -> bool:
        return not worker.retiring and worker.exit_code is None and worker.state != State.FAILED

    def pick(self) -> Worker | None:
        """The least busy usable worker with a free seat (the longest idle among equals)."""
        seats = [w for w in self.workers if self.usable(w) and w.in_use < self.spec.max_concurrency]
        return min(seats, key=lambda w: (w.in_use, w.idle_since)) if seats else None


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
        health_interval_s: float = 10.0,
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
        self.pools: dict[tuple, Pool] = {}
        self._tasks: set[asyncio.Task] = set()
        self.health_interval_s = health_interval_s
        self._ids = itertools.count(worker_id_base(runtime) + 1)
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

    def _backend_for(self, plugin: PluginRef) -> tuple[str, WorkerBackend]:
        if self._closing:
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

    def _free_slots(self) -> int:
        return self.max_workers - len(self.workers)

    async def allocate(
        self, plugin: PluginRef, *, timeout_s: float | None = None, owner: LeaseOwner | None = None
    ) -> tuple[Worker, list[Event], bool]:
        """A ready worker for ``plugin``: (worker, lifecycle events of this allocation, warm).

        Ephemeral plugins get a fresh worker. Pooled plugins get an idle warm worker, else a new
        one while the pool is below its maximum, else wait their turn in a FIFO queue for at
        most ``queue_timeout_s`` (then ``CapacityExhausted``).
        """
        backend_name, backend = self._backend_for(plugin)
        if plugin.pool is not None:
            worker, events, warm = await self._allocate_pooled(plugin, backend_name, backend, timeout_s)
            if owner is not None:
                worker.leases[owner] += 1
            return worker, events, warm
        if self._free_slots() <= 0:
            raise CapacityExhausted(
                f"all {self.max_workers} worker slots of supervisor {self.supervisor_id} are in use"
            )
        collector = _Collector()
        worker = await self._start_worker(plugin, backend_name, backend, collector, timeout_s)
        if owner is not None:
            worker.leases[owner] += 1
        self._emit(worker, State.EXECUTING, "handed to gateway", collector)
        return worker, collector.events, False

    async def _start_worker(
        self,
        plugin: PluginRef,
        backend_name: str,
        backend: WorkerBackend,
        collector: _Collector | None,
        timeout_s: float | None,
    ) -> Worker:
        """Spawn a worker and wait until it answers its Health probe (Requested ... Ready)."""
        worker = Worker(f"worker-{next(self._ids)}", plugin, backend_name, output=BoundedOutput(self.output_limit))
        worker.pooled = plugin.pool is not None
        self.workers[worker.worker_id] = worker
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
            await self._dispose(worker, backend, force=True, collector=collector or _Collector())
            if isinstance(exc, WorkerStartError):
                raise WorkerFailedToStart(detail) from exc
            raise
        ready_ms = (time.monotonic() - started) * 1000
        self._emit(worker, State.READY, f"Health SERVING after {ready_ms:.0f} ms", collector)
        worker.runtime_state["monitor"] = asyncio.create_task(self._monitor(worker, backend))
        return worker

    # --- pools ----------------------------------------------------------------------------

    def _background(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def prewarm(self, plugin: PluginRef) -> None:
        """Create the pool of a pooled plugin now, so that its ``min_idle`` workers start."""
        if plugin.pool is not None:
            self._backend_for(plugin)
            self._pool(plugin)

    def _pool(self, plugin: PluginRef) -> Pool:
        pool = self.pools.get(plugin.pool_key)
        if pool is None:
            pool = self.pools[plugin.pool_key] = Pool(plugin)
            pool.maintainer = asyncio.create_task(self._maintain(pool))
        else:
            pool.plugin = plugin  # pool sizes may have been edited in the registry
        return pool

    def _lease(self, pool: Pool, worker: Worker, collector: _Collector | None) -> None:
        worker.in_use += 1
        worker.output_mark = worker.output.total
        self._emit(worker, State.EXECUTING, f"warm, in use {worker.in_use}/{pool.spec.max_concurrency}", collector)

    async def _allocate_pooled(
        self, plugin: PluginRef, backend_name: str, backend: WorkerBackend, timeout_s: float | None
    ) -> tuple[Worker, list[Event], bool]:
        pool = self._pool(plugin)
        collector = _Collector()
        # Newcomers queue behind waiters already in line (FIFO fairness).
        if not pool.waiters and (worker := pool.pick()) is not None:
            self._lease(pool, worker, collector)
            return worker, collector.events, True
        if pool.size < pool.spec.max_workers and self._free_slots() > 0:
            pool.starting += 1
            try:
                worker = await self._start_worker(plugin, backend_name, backend, collector, timeout_s)
            finally:
                pool.starting -= 1
            pool.workers.append(worker)
            self._lease(pool, worker, collector)
            pool.wake.set()
            return worker, collector.events, False
        waiter: asyncio.Future[Worker] = asyncio.get_running_loop().create_future()
        pool.waiters.append(waiter)
        try:
            worker = await asyncio.wait_for(asyncio.shield(waiter), pool.spec.queue_timeout_s)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():  # handed over just as time ran out: take it
                worker = waiter.result()
            else:
                waiter.cancel()
                raise CapacityExhausted(
                    f"all {pool.size} workers of {plugin.name} are busy "
                    f"(max_workers {pool.spec.max_workers}, max_concurrency {pool.spec.max_concurrency}); "
                    f"waited {pool.spec.queue_timeout_s:g} s"
                ) from None
        finally:
            with contextlib.suppress(ValueError):
                pool.waiters.remove(waiter)
        # The releasing side already counted this lease (hand-over); record it for the trace.
        self._emit(worker, State.EXECUTING, f"warm, after waiting in line, in use {worker.in_use}", collector)
        return worker, collector.events, True

    def _hand_over(self, pool: Pool, worker: Worker) -> bool:
        """Give a worker with a free seat straight to the first caller in line."""
        while pool.waiters and worker.in_use < pool.spec.max_concurrency and pool.usable(worker):
            waiter = pool.waiters.popleft()
            if waiter.done():
                continue
            worker.in_use += 1
            worker.output_mark = worker.output.total
            waiter.set_result(worker)
            return True
        return False

    async def _maintain(self, pool: Pool) -> None:
        """Keep ``min_idle`` warm workers, stop idle surplus, health-check idle workers."""
        last_health = time.monotonic()
        while not self._closing:
            spec = pool.spec
            for worker in [w for w in pool.workers if not pool.usable(w) and w.in_use == 0]:
                await self._retire(pool, worker, "failed or recycled", None)
            idle = [w for w in pool.workers if pool.usable(w) and w.in_use == 0]
            now = time.monotonic()
            surplus = len(idle) - spec.min_idle
            for worker in sorted(idle, key=lambda w: w.idle_since):
                if surplus <= 0:
                    break
                if now - worker.idle_since >= spec.idle_timeout_s:
                    await self._retire(pool, worker, f"idle for {spec.idle_timeout_s:g} s", None)
                    surplus -= 1
            if now - last_health >= self.health_interval_s:
                last_health = now
                await self._health_check([w for w in pool.workers if pool.usable(w) and w.in_use == 0])
            missing = spec.min_idle - len([w for w in pool.workers if pool.usable(w) and w.in_use == 0]) - pool.starting
            room = min(spec.max_workers - pool.size, self._free_slots())
            for _ in range(max(0, min(missing, room))):
                pool.starting += 1
                self._background(self._prewarm(pool))
            pool.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.wake.wait(), 1.0)

    async def _prewarm(self, pool: Pool) -> None:
        try:
            name, backend = self._backend_for(pool.plugin)
            worker = await self._start_worker(pool.plugin, name, backend, None, None)
        except Exception as exc:
            log.warning("pre-warming %s failed: %s", pool.plugin.name, exc)
            await asyncio.sleep(1.0)  # do not spin on a plugin that cannot start
            return
        finally:
            pool.starting -= 1
        pool.workers.append(worker)
        worker.idle_since = time.monotonic()
        if not self._hand_over(pool, worker):
            self._emit(worker, State.IDLE, "warm, pre-started", None)

    async def _health_check(self, workers: list[Worker]) -> None:
        for worker in workers:
            try:
                async with grpc.aio.insecure_channel(worker.address, options=FAST_CHANNEL_OPTIONS) as channel:
                    reply = await ppp_grpc.PluginWorkerStub(channel).Health(ppp_pb2.HealthRequest(), timeout=1.0)
                healthy = reply.status == ppp_pb2.HealthResponse.SERVING
            except grpc.aio.AioRpcError:
                healthy = False
            if not healthy and worker.in_use == 0:
                worker.retiring = True
                self._emit(worker, State.FAILED, "failed its idle health check", None)

    async def _retire(self, pool: Pool, worker: Worker, reason: str, collector: _Collector | None) -> Outcome:
        with contextlib.suppress(ValueError):
            pool.workers.remove(worker)
        if worker.state != State.FAILED:
            self._emit(worker, State.RELEASING, f"retired: {reason}", collector)
        pool.wake.set()
        return await self._dispose(
            worker, self.backends[worker.backend], force=False, collector=collector or _Collector()
        )

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
        settled = {State.RELEASING, State.STOPPING, State.REMOVED, State.FAILED}
        if worker.state not in settled:
            worker.exited_unasked = True
            cause = await self._exit_cause(worker, backend, code)
            if worker.state not in settled:  # a release may have begun while the cause was looked up
                detail = f"worker exited unexpectedly with code {code}" + (f": {cause.detail}" if cause else "")
                self._emit(worker, State.FAILED, detail, None)

    @staticmethod
    async def _exit_cause(worker: Worker, backend: WorkerBackend, code: int) -> ExitCause | None:
        """Why the worker ended on its own, if it did (backends without the method cannot tell)."""
        if (exit_cause := getattr(backend, "exit_cause", None)) is None:
            return None
        try:
            return await exit_cause(worker, code)
        except Exception:
            log.exception("cannot tell why %s exited", worker.worker_id)
            return None

    # --- release --------------------------------------------------------------------------

    def _get(self, worker_id: str) -> Worker:
        try:
            return self.workers[worker_id]
        except KeyError:
            raise UnknownWorker(f"no worker {worker_id!r} on supervisor {self.supervisor_id}") from None

    async def release(
        self, worker_id: str, *, reason: str = "", retire: bool = False, owner: LeaseOwner | None = None
    ) -> Outcome:
        """The gateway is done with the worker.

        Ephemeral: stop it gracefully and remove it. Pooled: back to its pool (or straight to
        the next caller in line), unless ``retire``, it died, or it reached ``max_uses``.
        """
        worker = self._get(worker_id)
        self._drop_lease(worker, owner)
        collector = _Collector()
        if worker.pooled and (pool := self.pools.get(worker.plugin.pool_key)) is not None:
            return await self._release_pooled(pool, worker, reason, retire, collector)
        if worker.state != State.FAILED:
            self._emit(worker, State.COMPLETED, reason or "released", collector)
        self._emit(worker, State.RELEASING, reason or "released", collector)
        return await self._dispose(worker, self.backends[worker.backend], force=False, collector=collector)

    async def _release_pooled(
        self, pool: Pool, worker: Worker, reason: str, retire: bool, collector: _Collector
    ) -> Outcome:
        output, cut = worker.output.since(worker.output_mark)
        worker.in_use = max(0, worker.in_use - 1)
        worker.uses += 1
        spec = pool.spec
        if retire or (spec.max_uses and worker.uses >= spec.max_uses):
            worker.retiring = True
        if worker.state != State.FAILED:
            self._emit(worker, State.COMPLETED, reason or "released", collector)
        if not pool.usable(worker):
            if worker.in_use == 0:
                why = "caller saw it fail" if retire else f"used {worker.uses} times" if worker.retiring else "died"
                outcome = await self._retire(pool, worker, why, collector)
                return Outcome(outcome.events, output, cut, outcome.exit_code, outcome.exit_cause)
            return Outcome(collector.events, output, cut, 0)  # the last user retires it
        if not self._hand_over(pool, worker) and worker.in_use == 0:
            worker.idle_since = time.monotonic()
            self._emit(worker, State.IDLE, f"back in pool after {worker.uses} use(s)", collector)
        return Outcome(collector.events, output, cut, 0)

    async def cancel(self, worker_id: str, *, reason: str = "", owner: LeaseOwner | None = None) -> Outcome:
        """Abort: force-stop the worker now (timeouts, cancelled requests); never reused."""
        worker = self._get(worker_id)
        self._drop_lease(worker, owner)
        collector = _Collector()
        if worker.pooled and (pool := self.pools.get(worker.plugin.pool_key)) is not None:
            with contextlib.suppress(ValueError):
                pool.workers.remove(worker)
            pool.wake.set()
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
        cause = await self._exit_cause(worker, backend, code) if code != -1 else None
        self._emit(worker, State.REMOVED, f"exit code {code}" + (f" ({cause.detail})" if cause else ""), collector)
        return Outcome(collector.events, worker.output.text(), worker.output.truncated, code, cause)

    # --- leases of gateways that died -----------------------------------------------------

    @staticmethod
    def _drop_lease(worker: Worker, owner: LeaseOwner | None) -> None:
        if owner is not None and worker.leases.get(owner, 0) > 0:
            worker.leases[owner] -= 1
            if not worker.leases[owner]:
                del worker.leases[owner]

    async def reclaim(
        self, instance_id: str, *, started_before_ns: int, reason: str = ""
    ) -> tuple[list[str], list[Event]]:
        """Take back every worker that earlier lives of gateway ``instance_id`` still hold;
        (their ids, lifecycle events).

        That gateway died mid-invocation and will never release them. Ephemeral workers are
        stopped at once; pooled ones are retired (their dead lease may have left them
        mid-invocation), now if nobody else uses them, else by their last live user.
        """
        why = reason or f"gateway {instance_id} restarted"
        collector = _Collector()
        reclaimed: list[Worker] = []
        for worker in list(self.workers.values()):
            dead = [o for o in worker.leases if o[0] == instance_id and o[1] < started_before_ns]
            if not dead:
                continue
            held = sum(worker.leases.pop(owner) for owner in dead)
            reclaimed.append(worker)
            pool = self.pools.get(worker.plugin.pool_key) if worker.pooled else None
            if pool is None:
                outcome = await self.cancel(worker.worker_id, reason=f"lease reclaimed: {why}")
                collector.events += outcome.events
                continue
            worker.in_use = max(0, worker.in_use - held)
            worker.retiring = True
            if worker.in_use == 0:
                await self._retire(pool, worker, f"lease reclaimed: {why}", collector)
        if reclaimed:
            log.warning("reclaimed %d worker(s) from dead gateway %s", len(reclaimed), instance_id)
        return [w.worker_id for w in reclaimed], collector.events

    # --- life of the supervisor -----------------------------------------------------------

    async def start(self) -> int:
        """Reap what an earlier life left behind; how many orphans were removed."""
        reaped = 0
        for backend in self.backends.values():
            reaped += await backend.reap_orphans()
        if reaped:
            log.warning("removed %d orphan worker(s) of an earlier life of %s", reaped, self.supervisor_id)
        # After reaping: what a backend starts for itself (the process backend's Python zygote)
        # would otherwise be taken for an orphan. Only the default backend: the others may never
        # be asked for a worker, and start what they need on first use.
        if (prepare := getattr(self.backends[self.default_backend], "prepare", None)) is not None:
            prepare(self.runtime)
        return reaped

    async def shutdown(self) -> None:
        """Stop every worker (gracefully, then by force) and end all watch streams."""
        self._closing = True
        for pool in self.pools.values():
            if pool.maintainer is not None:
                pool.maintainer.cancel()
            for waiter in pool.waiters:
                waiter.cancel()
        await asyncio.gather(
            *(
                self.release(worker_id, reason="supervisor shutting down", retire=True)
                for worker_id in list(self.workers)
            ),
            return_exceptions=True,
        )
        for backend in self.backends.values():
            if (close := getattr(backend, "close", None)) is not None:
                try:
                    await close()
                except Exception:
                    log.exception("closing the %s backend failed", backend.name)
        for queue in list(self._watchers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

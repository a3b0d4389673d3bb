"""Warm worker pools: per pooled plugin, workers kept started and handed out by the seat.

A pooled worker has ``max_concurrency`` seats. An allocation takes a seat (``in_use`` counts the
seats handed out): of the least busy usable worker, else of a new worker while the pool is below
``max_workers`` and the supervisor has a free slot, else it waits in a FIFO line for at most
``queue_timeout_s`` (then ``CapacityExhausted``: admission control, never an unbounded queue).
Gateways hold seats across invocations (``gateway/leases.py``) and give them back when idle.
The pool's maintainer keeps ``min_idle`` workers warm, stops idle surplus after
``idle_timeout_s``, health-checks idle workers, and retires workers that failed or were used
``max_uses`` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from platform_core.supervisor.errors import CapacityExhausted
from platform_core.supervisor.lifecycle import Collector, Disposal, Lifecycle
from platform_core.supervisor.model import PluginRef, PoolSpec, State, Worker

log = logging.getLogger(__name__)


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

    def idle(self) -> list[Worker]:
        return [w for w in self.workers if self.usable(w) and w.in_use == 0]


class Pools:
    def __init__(self, lifecycle: Lifecycle, *, free_slots: Callable[[], int], health_interval_s: float) -> None:
        self.lifecycle = lifecycle
        self.free_slots = free_slots
        self.health_interval_s = health_interval_s
        self.pools: dict[tuple[object, ...], Pool] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def of(self, worker: Worker) -> Pool | None:
        return self.pools.get(worker.plugin.pool_key) if worker.pooled else None

    def pool(self, plugin: PluginRef) -> Pool:
        pool = self.pools.get(plugin.pool_key)
        if pool is None:
            pool = self.pools[plugin.pool_key] = Pool(plugin)
            pool.maintainer = asyncio.create_task(self._maintain(pool))
        else:
            pool.plugin = plugin  # pool sizes may have been edited in the registry
        return pool

    # --- handing out seats ------------------------------------------------------------------

    def _seat(self, pool: Pool, worker: Worker, collector: Collector | None) -> None:
        worker.in_use += 1
        worker.output_mark = worker.output.total
        self.lifecycle.emit(
            worker, State.EXECUTING, f"warm, in use {worker.in_use}/{pool.spec.max_concurrency}", collector
        )

    async def allocate(
        self, plugin: PluginRef, *, collector: Collector, timeout_s: float | None
    ) -> tuple[Worker, bool]:
        """A seat of a warm worker of ``plugin``: (worker, warm)."""
        pool = self.pool(plugin)
        # Newcomers queue behind waiters already in line (FIFO fairness).
        if not pool.waiters and (worker := pool.pick()) is not None:
            self._seat(pool, worker, collector)
            return worker, True
        if pool.size < pool.spec.max_workers and self.free_slots() > 0:
            pool.starting += 1
            try:
                worker = await self.lifecycle.start(
                    plugin, collector=collector, timeout_s=timeout_s, slot=self._slot_text(pool)
                )
            finally:
                pool.starting -= 1
            pool.workers.append(worker)
            self._seat(pool, worker, collector)
            pool.wake.set()
            return worker, False
        waiter: asyncio.Future[Worker] = asyncio.get_running_loop().create_future()
        pool.waiters.append(waiter)
        try:
            worker = await asyncio.wait_for(asyncio.shield(waiter), pool.spec.queue_timeout_s)
        except asyncio.CancelledError:
            # The caller gave up (a gateway that found a seat elsewhere): a seat handed over in
            # that very moment goes to the next in line, not to nobody.
            if waiter.done() and not waiter.cancelled():
                self._seat_back(pool, waiter.result())
            waiter.cancel()
            raise
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
        # The releasing side already counted this seat (hand-over); record it for the trace.
        self.lifecycle.emit(worker, State.EXECUTING, f"warm, after waiting in line, in use {worker.in_use}", collector)
        return worker, True

    def _slot_text(self, pool: Pool) -> str:
        return f"pool {pool.size}/{pool.spec.max_workers}"

    def _seat_back(self, pool: Pool, worker: Worker) -> None:
        worker.in_use = max(0, worker.in_use - 1)
        if not self._hand_over(pool, worker) and worker.in_use == 0:
            worker.idle_since = time.monotonic()
            self.lifecycle.emit(worker, State.IDLE, "back in pool: its caller gave up", None)

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

    # --- seats given back -------------------------------------------------------------------

    async def release(self, pool: Pool, worker: Worker, *, reason: str, retire: bool, collector: Collector) -> Disposal:
        """A seat is given back; the worker goes back to the pool, to the next in line, or is retired."""
        output, cut = worker.output.since(worker.output_mark)
        worker.in_use = max(0, worker.in_use - 1)
        spec = pool.spec
        if retire or (spec.max_uses and worker.uses >= spec.max_uses):
            worker.retiring = True
        if worker.state != State.FAILED and worker.in_use == 0:
            self.lifecycle.emit(worker, State.COMPLETED, reason or "released", collector)
        if not pool.usable(worker):
            if worker.in_use == 0:
                why = "caller saw it fail" if retire else f"used {worker.uses} times" if worker.retiring else "died"
                disposal = await self.retire(pool, worker, why, collector)
                return Disposal(disposal.events, output, cut, disposal.exit_code, disposal.exit_cause)
            # The last seat's holder retires it; this caller still learns why it broke, if it died.
            cause = await self.lifecycle.cause_if_exited(worker) if retire else None
            return Disposal(collector.events, output, cut, exit_cause=cause)
        if not self._hand_over(pool, worker) and worker.in_use == 0:
            worker.idle_since = time.monotonic()
            self.lifecycle.emit(worker, State.IDLE, f"back in pool after {worker.uses} use(s)", collector)
        return Disposal(collector.events, output, cut)

    def remove(self, worker: Worker) -> None:
        """A pooled worker is being force-stopped (cancelled): it is no longer the pool's."""
        if (pool := self.of(worker)) is not None:
            with contextlib.suppress(ValueError):
                pool.workers.remove(worker)
            pool.wake.set()

    async def retire(self, pool: Pool, worker: Worker, reason: str, collector: Collector | None) -> Disposal:
        with contextlib.suppress(ValueError):
            pool.workers.remove(worker)
        if worker.state != State.FAILED:
            self.lifecycle.emit(worker, State.RELEASING, f"retired: {reason}", collector)
        pool.wake.set()
        return await self.lifecycle.dispose(worker, force=False, collector=collector or Collector())

    # --- keeping the pool ---------------------------------------------------------------------

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _maintain(self, pool: Pool) -> None:
        """Keep ``min_idle`` warm workers, stop idle surplus, health-check idle workers."""
        last_health = time.monotonic()
        while not self.lifecycle.closing:
            spec = pool.spec
            for worker in [w for w in pool.workers if not pool.usable(w) and w.in_use == 0]:
                await self.retire(pool, worker, "failed or recycled", None)
            now = time.monotonic()
            idle = pool.idle()
            surplus = len(idle) - spec.min_idle
            for worker in sorted(idle, key=lambda w: w.idle_since):
                if surplus <= 0:
                    break
                if now - worker.idle_since >= spec.idle_timeout_s:
                    await self.retire(pool, worker, f"idle for {spec.idle_timeout_s:g} s", None)
                    surplus -= 1
            if now - last_health >= self.health_interval_s:
                last_health = now
                await self._health_check(pool.idle())
            missing = spec.min_idle - len(pool.idle()) - pool.starting
            room = min(spec.max_workers - pool.size, self.free_slots())
            for _ in range(max(0, min(missing, room))):
                pool.starting += 1
                self._background(self._prewarm(pool))
            pool.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.wake.wait(), 1.0)

    async def _prewarm(self, pool: Pool) -> None:
        try:
            worker = await self.lifecycle.start(pool.plugin, collector=None, timeout_s=None, slot=self._slot_text(pool))
        except Exception as exc:
            log.warning("pre-warming %s failed: %s", pool.plugin.name, exc)
            await asyncio.sleep(1.0)  # do not spin on a plugin that cannot start
            return
        finally:
            pool.starting -= 1
        pool.workers.append(worker)
        worker.idle_since = time.monotonic()
        if not self._hand_over(pool, worker):
            self.lifecycle.emit(worker, State.IDLE, "warm, pre-started", None)

    async def _health_check(self, workers: list[Worker]) -> None:
        for worker in workers:
            if not await self.lifecycle.health(worker) and worker.in_use == 0:
                worker.retiring = True
                self.lifecycle.emit(worker, State.FAILED, "failed its idle health check", None)

    def close(self) -> None:
        for pool in self.pools.values():
            if pool.maintainer is not None:
                pool.maintainer.cancel()
            for waiter in pool.waiters:
                waiter.cancel()

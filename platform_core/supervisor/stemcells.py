"""Stem cells: ephemeral workers started ahead, before anyone knows which plugin they will run.

What a cold start costs and does not depend on the plugin (a JVM loading grpc-java and Netty,
a container's create and start, the SDK's imports) is done in the background: per backend and
limit class, ``count`` stem cells are kept ready (state ``STEM_CELL``: the worker program up and
serving PPP, no plugin). An ephemeral allocation that finds one takes it, applies the plugin's
limits to it, has it load the plugin (``backends/stem_bind.py``), probes it like any worker and
hands it out; it serves that one invocation and is destroyed on release like any ephemeral
worker. When none is ready the allocation spawns a worker as before: it never waits for a refill.

**Limit classes.** A stem cell is interchangeable with a fresh worker only if everything that is
fixed at its start matches the plugin: runtime recipe, backend, image, and the memory limit
(a JVM's heap is sized at start: ``-Xmx`` from {heap_mb}, or a share of the container's memory;
a container's memory can be raised by ``docker update`` but its JVM's heap cannot). So stem
cells are kept per memory limit (``memory_mb``, the classes); the other limits are applied at
binding: the pids cgroup's ``pids.max`` and CPU-seconds rlimit (counted from binding) on the
process backend, ``docker update`` (CPUs, pids) on the docker backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from platform_core.runtimes import BUILTIN_RUNTIMES, RuntimeSpec
from platform_core.supervisor.lifecycle import Collector, Lifecycle
from platform_core.supervisor.model import Limits, PluginRef, State, Worker

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# Processes and threads a stem cell may have before it is bound (the JVM starts ~20 threads);
# binding sets the plugin's own limit.
STEM_PIDS = 128
# A refill waits until the workers its kind handed out are removed, at most this long: a stem
# cell's start (a JVM's second of CPU) would otherwise slow the very invocation that took one.
REFILL_WAIT_S = 1.0
# A stem cell that fails to start is retried after this, doubling up to the maximum.
RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 60.0


@dataclass(frozen=True)
class StemCellPlan:
    """How many stem cells to keep for one backend of a supervisor, per memory limit class."""

    backend: str
    count: int = 1
    # Memory limits (MiB) of the classes kept; a plugin whose memory limit is none of them spawns.
    memory_mb: tuple[int, ...] = (Limits().memory_bytes // MIB,)


def parse_plans(text: str, runtime: str, *, memory_mb: tuple[int, ...]) -> list[StemCellPlan]:
    """``STEM_CELLS``: comma-separated ``runtime/backend=count`` (e.g. ``java/process=2,python/docker=1``);
    the entries of ``runtime``. Raises ValueError on a malformed entry."""
    plans = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        where, _, count = entry.partition("=")
        name, _, backend = where.partition("/")
        if not name or backend not in {"process", "docker"} or not count.strip().isdigit():
            raise ValueError(f"STEM_CELLS entry {entry!r} is not runtime/backend=count (backend: process or docker)")
        if name.strip() == runtime and int(count) > 0:
            plans.append(StemCellPlan(backend=backend, count=int(count), memory_mb=memory_mb))
    return plans


@dataclass
class _Kind:
    """The stem cells of one backend and limit class."""

    ref: PluginRef
    count: int
    ready: list[Worker] = field(default_factory=list)
    wanted: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # Handed out and not yet removed (ids): the refill waits for them (REFILL_WAIT_S at most).
    in_use: set[str] = field(default_factory=set)


def _key(plugin: PluginRef, spec: RuntimeSpec | None, default_backend: str) -> tuple[Any, ...]:
    """What must match between a stem cell and a plugin for one to stand in for the other."""
    image = plugin.image or (spec.image if spec else "")
    return (plugin.backend or default_backend, spec, image, plugin.limits.memory_bytes)


class StemCells:
    """Keeps each plan's stem cells ready, refilled in the background; hands them to allocations."""

    def __init__(self, lifecycle: Lifecycle, plans: list[StemCellPlan], *, spec: RuntimeSpec | None = None) -> None:
        self.lifecycle = lifecycle
        self.plans = plans
        # The recipe stem cells are started from: the registry's (given by runsupervisor), else built in.
        self.spec = spec or BUILTIN_RUNTIMES.get(lifecycle.runtime)
        self._kinds: dict[tuple[Any, ...], _Kind] = {}
        self.closing = False
        lifecycle.on_removed = self._removed

    def start(self) -> None:
        """Start keeping the planned stem cells (for backends that can start them)."""
        if self.spec is None:
            return
        for plan in self.plans:
            backend = self.lifecycle.backends.get(plan.backend)
            if backend is None or not backend.can_start_stem_cells(self.spec):
                log.warning(
                    "no %s stem cells on %s: backend not enabled or runtime without stem cells",
                    plan.backend,
                    self.lifecycle.supervisor_id,
                )
                continue
            for memory_mb in plan.memory_mb:
                ref = PluginRef(
                    name="",
                    runtime=self.lifecycle.runtime,
                    backend=plan.backend,
                    image=self.spec.image,
                    limits=Limits(memory_bytes=memory_mb * MIB, pids=STEM_PIDS, cpu_seconds=0),
                    runtime_spec=self.spec,
                )
                kind = _Kind(ref, plan.count)
                self._kinds[_key(ref, self.spec, self.lifecycle.default_backend)] = kind
                kind.task = asyncio.create_task(self._keep(kind))

    def kinds(self) -> list[tuple[str, int, int]]:
        """(backend, memory class in MiB, how many are kept) of each kind kept."""
        return [(k.ref.backend, k.ref.limits.memory_bytes // MIB, k.count) for k in self._kinds.values()]

    def take(self, plugin: PluginRef) -> Worker | None:
        """A ready stem cell that can become ``plugin``'s worker, or None (spawn one instead)."""
        if plugin.pool is not None or not self._kinds:
            return None
        kind = self._kinds.get(_key(plugin, plugin.launch_spec, self.lifecycle.default_backend))
        if kind is None:
            return None
        while kind.ready:
            worker = kind.ready.pop(0)
            kind.wanted.set()
            if worker.alive and worker.state == State.STEM_CELL and worker.worker_id in self.lifecycle.workers:
                kind.in_use.add(worker.worker_id)
                return worker
        return None

    async def _keep(self, kind: _Kind) -> None:
        """Refill ``kind`` to its count, one stem cell at a time (a JVM start takes a core)."""
        retry = RETRY_INITIAL_S
        while not self.closing:
            for worker in [w for w in kind.ready if not (w.alive and w.state == State.STEM_CELL)]:
                kind.ready.remove(worker)
                if worker.worker_id in self.lifecycle.workers:  # died waiting: remove what is left
                    await self.lifecycle.dispose(worker, force=True, collector=Collector())
            if len(kind.ready) >= kind.count:
                kind.wanted.clear()
                await kind.wanted.wait()
                continue
            if kind.in_use:
                await self._until_removed(kind)
            try:
                worker = await self.lifecycle.start_stem(kind.ref)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.closing:
                    return
                log.warning("a %s stem cell failed to start (%s); next try in %.0f s", kind.ref.backend, exc, retry)
                await asyncio.sleep(retry)  # back-off of a background retry, not an ordering wait
                retry = min(retry * 2, RETRY_MAX_S)
                continue
            retry = RETRY_INITIAL_S
            if self.closing:
                return
            kind.ready.append(worker)

    async def _until_removed(self, kind: _Kind) -> None:
        """Wait until the workers ``kind`` handed out are removed, REFILL_WAIT_S at most."""
        deadline = asyncio.get_running_loop().time() + REFILL_WAIT_S
        while kind.in_use and not self.closing:
            kind.wanted.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kind.wanted.wait(), remaining)
        kind.in_use.clear()

    def _removed(self, worker: Worker) -> None:
        for kind in self._kinds.values():
            if worker.worker_id in kind.in_use:
                kind.in_use.discard(worker.worker_id)
                kind.wanted.set()

    def watch_exit(self, worker: Worker) -> None:
        """A worker exited on its own: if it was a waiting stem cell, its kind refills."""
        if worker.stem_cell:
            for kind in self._kinds.values():
                if worker in kind.ready:
                    kind.wanted.set()

    async def close(self) -> None:
        """Stop refilling; the stem cells themselves are stopped with the other workers."""
        self.closing = True
        for kind in self._kinds.values():
            if kind.task is not None:
                kind.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await kind.task

"""The supervisor's service: allocate, lease, release and reclaim workers of one runtime.

* **Ephemeral** plugins get a fresh worker per allocation, stopped and removed on release.
* **Pooled** plugins get a seat of a warm worker (``pools``); gateways keep seats across
  invocations and give them back when idle.
* Every allocation is a **lease** (``leases``) that its gateway renews; a lease not renewed in
  time is taken back, so a gateway that dies never holds a worker for longer than the TTL.
* **Stem cells** (``stemcells``): ephemeral workers started ahead with no plugin; an ephemeral
  allocation binds a ready one to its plugin instead of spawning (never waiting for one).
* **Fair share**: while several tenants use a supervisor, one tenant may hold at most
  ``tenant_share`` of its worker slots (ephemeral workers; a lone tenant may use them all).

The worker's own life (start, probe, monitor, stop) is ``lifecycle``; the gRPC adapter is
``grpc_service``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import NamedTuple

from platform_core.runtimes import RuntimeSpec
from platform_core.supervisor.backends import WorkerBackend
from platform_core.supervisor.errors import CapacityExhausted, UnknownWorker
from platform_core.supervisor.leases import LeaseBook
from platform_core.supervisor.lifecycle import Collector, Disposal, Lifecycle
from platform_core.supervisor.model import Event, Lease, LeaseOwner, PluginRef, State, Worker
from platform_core.supervisor.pools import Pools
from platform_core.supervisor.stemcells import StemCellPlan, StemCells

log = logging.getLogger(__name__)

# How often leases are checked for expiry.
LEASE_CHECK_INTERVAL_S = 1.0
# A tenant counts as using the supervisor this long after its last allocation (fair share).
TENANT_ACTIVE_S = 30.0


class Allocation(NamedTuple):
    worker: Worker
    # Lifecycle events of this allocation (Requested ... Executing), for the caller's trace.
    events: list[Event]
    warm: bool
    lease: Lease


@dataclass
class Usage:
    """What a lease holder reports at renewal."""

    lease_id: str
    busy: bool = False
    # Invocations served on the lease since the last report.
    uses: int = 0


@dataclass
class Renewal:
    # Leases the holder must give back (as soon as it is done with them): lease id → why.
    revoked: dict[str, str] = field(default_factory=dict)
    # Leases the supervisor does not know (expired and taken back, or never granted).
    unknown: list[str] = field(default_factory=list)


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
        lease_ttl_s: float = 15.0,
        tenant_share: float = 1.0,
        stem_cells: list[StemCellPlan] | None = None,
        stem_cell_spec: RuntimeSpec | None = None,
    ) -> None:
        self.max_workers = max_workers
        self.tenant_share = tenant_share
        self.lifecycle = Lifecycle(
            runtime=runtime,
            supervisor_id=supervisor_id,
            backends=backends,
            default_backend=default_backend,
            ready_timeout_s=ready_timeout_s,
            stop_grace_s=stop_grace_s,
            output_limit=output_limit,
        )
        self.lifecycle.on_exit = self._worker_exited
        self.pools = Pools(self.lifecycle, free_slots=self._free_slots, health_interval_s=health_interval_s)
        self.stem_cells = StemCells(self.lifecycle, stem_cells or [], spec=stem_cell_spec)
        self.leases = LeaseBook(ttl_s=lease_ttl_s)
        self._tenants_seen: dict[str, float] = {}
        self._expiry: asyncio.Task[None] | None = None

    @property
    def runtime(self) -> str:
        return self.lifecycle.runtime

    @runtime.setter
    def runtime(self, runtime: str) -> None:
        self.lifecycle.runtime = runtime

    @property
    def supervisor_id(self) -> str:
        return self.lifecycle.supervisor_id

    @property
    def workers(self) -> dict[str, Worker]:
        return self.lifecycle.workers

    @property
    def backends(self) -> dict[str, WorkerBackend]:
        return self.lifecycle.backends

    @property
    def default_backend(self) -> str:
        return self.lifecycle.default_backend

    def watch(self) -> AsyncIterator[Event]:
        return self.lifecycle.watch()

    # --- allocation -----------------------------------------------------------------------

    def _free_slots(self) -> int:
        """Worker slots not in use (stem cells waiting for a plugin hold none)."""
        return self.max_workers - sum(1 for w in self.workers.values() if not w.stem_cell)

    def _check_fair_share(self, tenant: str) -> None:
        """While other tenants use this supervisor, one tenant holds at most its share of the slots."""
        now = time.monotonic()
        if not tenant or self.tenant_share >= 1.0:
            return
        others = [t for t, seen in self._tenants_seen.items() if t != tenant and now - seen < TENANT_ACTIVE_S]
        if not others:
            return
        cap = max(1, math.floor(self.tenant_share * self.max_workers))
        held = sum(1 for w in self.workers.values() if w.tenant == tenant)
        if held >= cap:
            raise CapacityExhausted(
                f"tenant {tenant} already holds {held} of the {self.max_workers} worker slots of supervisor "
                f"{self.supervisor_id}, its fair share ({self.tenant_share:.0%}) while other tenants use it"
            )

    async def allocate(
        self,
        plugin: PluginRef,
        *,
        timeout_s: float | None = None,
        owner: LeaseOwner | None = None,
        tenant: str = "",
    ) -> Allocation:
        """A ready worker (ephemeral) or a seat of a warm one (pooled), leased to ``owner``."""
        self.lifecycle.backend_for(plugin)  # refuse early: shutting down, wrong runtime, backend off
        collector = Collector()
        if plugin.pool is not None:
            worker, warm = await self.pools.allocate(plugin, collector=collector, timeout_s=timeout_s)
        else:
            if tenant:  # noted before the slots are counted: a tenant refused for want of one waits too
                self._tenants_seen[tenant] = time.monotonic()
            if self._free_slots() <= 0:
                raise CapacityExhausted(
                    f"all {self.max_workers} worker slots of supervisor {self.supervisor_id} are in use"
                )
            self._check_fair_share(tenant)
            slot = f"slot {self.max_workers - self._free_slots() + 1}/{self.max_workers}"
            if (stem := self.stem_cells.take(plugin)) is not None:
                worker = await self.lifecycle.bind(
                    stem, plugin, collector=collector, timeout_s=timeout_s, slot=slot, tenant=tenant
                )
            else:
                worker = await self.lifecycle.start(
                    plugin, collector=collector, timeout_s=timeout_s, slot=slot, tenant=tenant
                )
            self.lifecycle.emit(worker, State.EXECUTING, "handed to gateway", collector)
            warm = False
        lease = self.leases.grant(worker, owner=owner, tenant=tenant)
        return Allocation(worker, collector.events, warm, lease)

    def prewarm(self, plugin: PluginRef) -> None:
        """Create the pool of a pooled plugin now, so that its ``min_idle`` workers start."""
        if plugin.pool is not None:
            self.lifecycle.backend_for(plugin)
            self.pools.pool(plugin)

    # --- release --------------------------------------------------------------------------

    def _get(self, worker_id: str) -> Worker:
        try:
            return self.workers[worker_id]
        except KeyError:
            raise UnknownWorker(f"no worker {worker_id!r} on supervisor {self.supervisor_id}") from None

    async def release(
        self,
        worker_id: str,
        *,
        reason: str = "",
        retire: bool = False,
        owner: LeaseOwner | None = None,
        lease_id: str = "",
        uses: int | None = None,
    ) -> Disposal:
        """The gateway gives its lease back (``uses``: invocations served on it not yet reported;
        None: one).

        Ephemeral: stop the worker gracefully and remove it. Pooled: the seat goes back to its
        pool (or straight to the next caller in line), unless ``retire``, the worker died, or it
        reached ``max_uses``.
        """
        worker = self._get(worker_id)
        self.leases.take(worker, lease_id, owner)
        collector = Collector()
        if (pool := self.pools.of(worker)) is not None:
            worker.uses += 1 if uses is None else uses
            return await self.pools.release(pool, worker, reason=reason, retire=retire, collector=collector)
        if worker.state != State.FAILED:
            self.lifecycle.emit(worker, State.COMPLETED, reason or "released", collector)
        self.lifecycle.emit(worker, State.RELEASING, reason or "released", collector)
        return await self.lifecycle.dispose(worker, force=False, collector=collector)

    async def cancel(
        self, worker_id: str, *, reason: str = "", owner: LeaseOwner | None = None, lease_id: str = ""
    ) -> Disposal:
        """Abort: force-stop the worker now (timeouts, cancelled requests); never reused."""
        worker = self._get(worker_id)
        self.leases.drop_all(worker)
        self.pools.remove(worker)
        collector = Collector()
        if worker.state != State.FAILED:
            self.lifecycle.emit(worker, State.FAILED, f"cancelled: {reason or 'no reason given'}", collector)
        return await self.lifecycle.dispose(worker, force=True, collector=collector)

    # --- leases ---------------------------------------------------------------------------

    def renew(self, owner: LeaseOwner | None, usages: list[Usage], *, now: float | None = None) -> Renewal:
        """Extend ``owner``'s leases, take in its usage, and say which leases it must give back
        (``now``: the monotonic clock's time of the renewal, by default the present)."""
        renewal = Renewal()
        touched: set[str] = set()
        for usage in usages:
            lease = self.leases.renew(owner, usage.lease_id, busy=usage.busy, now=now)
            if lease is None:
                renewal.unknown.append(usage.lease_id)
                continue
            worker = self.workers.get(lease.worker_id)
            if worker is None:
                renewal.unknown.append(usage.lease_id)
                continue
            worker.uses += usage.uses
            touched.add(worker.worker_id)
            pool = self.pools.of(worker)
            if not lease.revoked and pool is not None and pool.spec.max_uses and worker.uses >= pool.spec.max_uses:
                worker.retiring = True
            if worker.retiring and not lease.revoked:
                lease.revoked = f"worker {worker.worker_id} is being recycled (used {worker.uses} times)"
            if lease.revoked:
                renewal.revoked[lease.lease_id] = lease.revoked
        for worker_id in touched:
            self._show_use(self.workers[worker_id])
        return renewal

    def _show_use(self, worker: Worker) -> None:
        """A pooled worker's state as its holders last reported it (busy: executing; else idle)."""
        if self.pools.of(worker) is None or worker.state in {State.FAILED, State.STOPPING, State.REMOVED}:
            return
        busy = sum(1 for lease in worker.leases.values() if lease.busy)
        if busy and worker.state != State.EXECUTING:
            self.lifecycle.emit(worker, State.EXECUTING, f"running {busy} invocation(s) on held seats", None)
        elif not busy and worker.leases and worker.state == State.EXECUTING:
            self.lifecycle.emit(worker, State.IDLE, f"{len(worker.leases)} seat(s) held, idle", None)

    def _worker_exited(self, worker: Worker) -> None:
        """A worker died on its own: whoever holds it must give it back (and will learn why)."""
        self.stem_cells.watch_exit(worker)
        for lease in worker.leases.values():
            lease.revoked = lease.revoked or f"worker {worker.worker_id} exited"

    async def expire_leases(self, now: float | None = None) -> list[str]:
        """Take back the workers of leases whose holders stopped renewing them; their ids."""
        taken: list[str] = []
        for lease in self.leases.expired(now):
            worker = self.workers.get(lease.worker_id)
            self.leases.leases.pop(lease.lease_id, None)
            if worker is None:
                continue
            worker.leases.pop(lease.lease_id, None)
            holder = lease.owner[0] if lease.owner else "its gateway"
            why = f"lease expired: {holder} stopped renewing it for {self.leases.ttl_s:g} s"
            log.warning("%s of %s: %s", lease.lease_id, worker.worker_id, why)
            taken.append(worker.worker_id)
            await self._take_back(worker, why, Collector())
        return taken

    async def _take_back(self, worker: Worker, why: str, collector: Collector) -> None:
        """A lease's holder is gone: stop an ephemeral worker; retire a pooled one (its dead holder
        may have left it mid-invocation) once nobody else uses it."""
        pool = self.pools.of(worker)
        if pool is None:
            if worker.worker_id in self.workers:
                collector.events += (await self.cancel(worker.worker_id, reason=why)).events
            return
        worker.in_use = max(0, worker.in_use - 1)
        worker.retiring = True
        for lease in worker.leases.values():
            lease.revoked = lease.revoked or why
        if worker.in_use == 0:
            await self.pools.retire(pool, worker, why, collector)

    async def _expire_forever(self) -> None:
        while not self.lifecycle.closing:
            await asyncio.sleep(LEASE_CHECK_INTERVAL_S)
            try:
                await self.expire_leases()
            except Exception:
                log.exception("expiring leases failed")

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
        collector = Collector()
        reclaimed: list[str] = []
        for lease in self.leases.of_instance(instance_id, started_before_ns=started_before_ns):
            worker = self.workers.get(lease.worker_id)
            self.leases.leases.pop(lease.lease_id, None)
            if worker is None:
                continue
            worker.leases.pop(lease.lease_id, None)
            if worker.worker_id not in reclaimed:
                reclaimed.append(worker.worker_id)
            await self._take_back(worker, f"lease reclaimed: {why}", collector)
        if reclaimed:
            log.warning("reclaimed %d worker(s) from dead gateway %s", len(reclaimed), instance_id)
        return reclaimed, collector.events

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
        self.backends[self.default_backend].prepare(self.runtime)
        self.stem_cells.start()
        self._expiry = asyncio.create_task(self._expire_forever())
        return reaped

    async def shutdown(self) -> None:
        """Stop every worker (gracefully, then by force) and end all watch streams."""
        self.lifecycle.closing = True
        if self._expiry is not None:
            self._expiry.cancel()
        self.pools.close()
        await self.stem_cells.close()
        await asyncio.gather(*(self._stop(worker) for worker in list(self.workers.values())), return_exceptions=True)
        for backend in self.backends.values():
            try:
                await backend.close()
            except Exception:
                log.exception("closing the %s backend failed", backend.name)
        self.lifecycle.end_watches()

    async def _stop(self, worker: Worker) -> None:
        self.leases.drop_all(worker)
        collector = Collector()
        if worker.state != State.FAILED:
            self.lifecycle.emit(worker, State.RELEASING, "supervisor shutting down", collector)
        await self.lifecycle.dispose(worker, force=False, collector=collector)

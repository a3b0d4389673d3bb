"""The gateway's leases: workers held between invocations, renewed while held.

Every allocation is a lease from a supervisor (``runtime_client``). This module decides when to
ask for one and keeps them:

* **Pooled plugins**: a lease is one seat of a warm worker. When an invocation ends, its seat is
  *kept* (idle, in this process) for the next invocation of the plugin, which then runs with no
  supervisor call at all: a warm invocation is one PPP Invoke. Seats idle for longer than
  ``LEASE_IDLE_RETURN_S`` go back to the supervisor (so that other gateway processes and the
  pool's idle timeout see them free); so do seats the supervisor revokes (worker recycled after
  ``max_uses``, retired, exited) and seats whose worker misbehaved (never used again).
  When every seat this process could hold is busy, an invocation waits its turn (FIFO) for one
  at most ``queue_timeout_s``, then 503 ``no_capacity`` with Retry-After.
* **Ephemeral plugins**: a lease is the worker itself, for one invocation, released after it.

A keeper task per event loop renews every held lease (``RenewLeases``) a few times per TTL and
reports their use (busy or idle, invocations served), which is how the supervisor's workers
board learns what runs where; a gateway that dies stops renewing, and the supervisor takes its
workers back when the TTL runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import weakref
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from platform_core.gateway import errors
from platform_core.gateway.runtime_client import (
    ReleaseReport,
    WorkerLease,
    leases_renew,
    supervisor_addresses,
    worker_allocate,
    worker_release,
)
from platform_core.gateway.worker_route import WorkerRoute, lease_route, worker_channels
from platform_core.invocations.trace import Trace
from platform_core.invocations.vocabulary import EventKind as K
from platform_core.observability import metrics
from platform_core.registry.models import PluginSpec, WorkerMode
from platform_core.rpc import sup_pb2
from platform_core.tenancy.callers import Caller

log = logging.getLogger(__name__)

# A kept seat unused this long goes back to its supervisor.
LEASE_IDLE_RETURN_S = 2.0
# An allocation whose caller was served meanwhile by a freed seat is cancelled if still pending
# this long after (it waits in a supervisor's queue); one that completes sooner is a kept seat.
ALLOCATION_CANCEL_GRACE_S = 0.05
# After a change of use (busy/idle), report it this soon (the workers board follows).
USAGE_REPORT_DELAY_S = 0.5


@dataclass(eq=False)
class Held:
    """One lease this gateway process holds."""

    lease: WorkerLease
    pooled: bool
    busy: bool = True
    idle_since: float = 0.0
    # Invocations served and not yet reported to the supervisor.
    unreported: int = 0
    uses: int = 0
    # Never hand it out again: the supervisor revoked it, or its worker misbehaved.
    done: str = ""
    # The trace of the allocation that leased it, until the invocation that first uses it adopts it.
    allocation: Trace | None = None

    @cached_property
    def route(self) -> WorkerRoute:
        """How this gateway reaches the worker (its socket, or its supervisor's relay)."""
        return lease_route(self.lease)


@dataclass
class _Seats:
    """This process's seats of one pooled plugin."""

    # Its name (metrics).
    plugin: str = ""
    idle: deque[Held] = field(default_factory=deque)
    busy: set[Held] = field(default_factory=set)
    waiters: deque[asyncio.Future[Held]] = field(default_factory=deque)
    acquiring: int = 0

    @property
    def held(self) -> int:
        return len(self.idle) + len(self.busy) + self.acquiring


def _consumed(task: asyncio.Future[None]) -> None:
    """An allocation's failure is its waiter's to report (or nobody's, once that one was served)."""
    if not task.cancelled():
        task.exception()


def _key(plugin: PluginSpec) -> tuple[object, ...]:
    """Seats of a plugin as it is now: after an edit in the registry, new seats (the old ones idle out)."""
    return (plugin.pk, plugin.updated_at)


def _cancel_if_unneeded(allocating: asyncio.Future[None], seats: _Seats) -> None:
    if not allocating.done() and seats.acquiring > len(seats.waiters):
        allocating.cancel()


class Keeper:
    """The leases of one event loop, and the task that renews them."""

    def __init__(self) -> None:
        self.held: dict[str, Held] = {}
        self.seats: dict[tuple[object, ...], _Seats] = {}
        self._report_due = asyncio.Event()
        # In a context of its own: not in the name of the invocation that happened to start it (log ids).
        self._task = asyncio.get_running_loop().create_task(self._keep(), context=contextvars.Context())
        self._returning: set[asyncio.Task[ReleaseReport]] = set()

    # --- getting a worker -----------------------------------------------------------------

    async def acquire(self, *, plugin: PluginSpec, caller: Caller, trace: Trace, timeout_s: float) -> Held:
        """A worker for one invocation: a kept seat (warm, no supervisor call), else a new lease."""
        if plugin.mode != WorkerMode.POOLED:
            lease = await worker_allocate(plugin=plugin, caller=caller, trace=trace, timeout_s=timeout_s)
            return self._hold(lease, False)
        seats = self.seats.setdefault(_key(plugin), _Seats(plugin.name))
        opened = trace.add(K.ALLOCATE_REQUEST, f"allocateWorker({plugin.name}, context)")
        if (seat := self._take_idle(seats)) is not None:
            trace.add(K.LEASE_USED, f"{seat.lease.worker_id}: warm seat held by this gateway ({seat.uses} use(s))")
            return seat
        # In line for the next seat: one this process frees, or a new one from a supervisor
        # (asked for now, while this process holds fewer than the runtime's supervisors can give).
        waiter: asyncio.Future[Held] = asyncio.get_running_loop().create_future()
        seats.waiters.append(waiter)
        allocating = None
        if seats.held < plugin.max_workers * plugin.max_concurrency * max(
            len(supervisor_addresses(plugin.runtime_id)), 1
        ):
            # The supervisor's spans join this invocation's allocation span (which asked for the seat).
            traceparent = trace.traceparent(opened)
            allocating = asyncio.ensure_future(self._new_seat(plugin, caller, timeout_s, seats, traceparent))
            allocating.add_done_callback(_consumed)
        try:
            seat = await self._first_seat(waiter, allocating, seats, plugin)
        finally:
            with contextlib.suppress(ValueError):
                seats.waiters.remove(waiter)
            if allocating is not None and not allocating.done():
                # Served by a seat this process freed. The allocation goes on (a supervisor with a
                # free seat answers in milliseconds, and the seat is kept for the next call) unless
                # it is still pending a moment later: then it waits in a supervisor's queue, where it
                # would take a seat ahead of another gateway that needs one. (Cancelled at once, as
                # it used to be, a pool growing under load paid an AllocateWorker and its
                # cancellation for most calls: ~10% of the gateway's CPU, bench/hotpath.py.)
                asyncio.get_running_loop().call_later(ALLOCATION_CANCEL_GRACE_S, _cancel_if_unneeded, allocating, seats)
        if seat.allocation is not None:  # the supervisor's events of the allocation that made it
            trace.adopt(seat.allocation, skip=frozenset({K.ALLOCATE_REQUEST}))  # recorded above already
            seat.allocation = None
        else:
            trace.add(K.LEASE_USED, f"{seat.lease.worker_id}: warm seat held by this gateway, freed for this call")
        return seat

    async def _first_seat(
        self, waiter: asyncio.Future[Held], allocating: asyncio.Future[None] | None, seats: _Seats, plugin: PluginSpec
    ) -> Held:
        """Wait for ``waiter`` (a seat handed over in FIFO order) at most ``queue_timeout_s`` — or,
        while a new seat is being allocated, as long as that takes. An allocation that fails
        ends the wait at once when this process holds no seat that could free up."""
        deadline = time.monotonic() + plugin.queue_timeout_s
        failure: errors.GatewayError | None = None
        while not waiter.done():
            pending: set[asyncio.Future[Any]] = (
                {waiter} if allocating is None or allocating.done() else {waiter, allocating}
            )
            remaining = deadline - time.monotonic()
            if len(pending) == 1 and remaining <= 0:
                break
            await asyncio.wait(pending, timeout=None if len(pending) == 2 else remaining, return_when="FIRST_COMPLETED")
            if allocating is not None and allocating.done() and failure is None and not allocating.cancelled():
                if isinstance(exc := allocating.exception(), errors.GatewayError):
                    failure = exc
                    if seats.held == 0:
                        break
                elif exc is not None:
                    raise exc
        if waiter.done() and not waiter.cancelled():
            return waiter.result()
        waiter.cancel()
        if failure is not None:
            raise failure
        raise errors.NoCapacity(
            f"all {seats.held} seats of {plugin.name} this gateway holds are busy and no supervisor gave "
            f"another (max_workers {plugin.max_workers}, max_concurrency {plugin.max_concurrency}); "
            f"waited {plugin.queue_timeout_s:g} s"
        )

    async def _new_seat(
        self, plugin: PluginSpec, caller: Caller, timeout_s: float, seats: _Seats, traceparent: str = ""
    ) -> None:
        """Lease one more seat from a supervisor; it goes to the first caller in line (or idles)."""
        allocation = Trace("", publish=False)
        seats.acquiring += 1
        try:
            lease = await worker_allocate(
                plugin=plugin, caller=caller, trace=allocation, timeout_s=timeout_s, traceparent=traceparent
            )
        finally:
            seats.acquiring -= 1
        seat = self._hold(lease, True)
        seat.allocation = allocation
        self._keep_seat(seat, plugin)

    def _hold(self, lease: WorkerLease, pooled: bool) -> Held:
        held = self.held[lease.lease_id] = Held(lease, pooled)
        self._usage_changed()
        return held

    def _take_idle(self, seats: _Seats) -> Held | None:
        while seats.idle:
            seat = seats.idle.pop()  # the most recently used: warm caches, and the others can idle out
            if seat.done:
                continue
            if not worker_channels.connected(seat.route):
                # Its connection broke while it idled (the worker died, or was stopped): never used
                # again, and given back so that the supervisor retires it and says why.
                seat.done = "its connection broke while it was kept"
                self._retire_worker(seat.lease.worker_id)
                self._background(self._give_back(seat, reason=seat.done, trace=None, retire=True))
                continue
            seat.busy = True
            seats.busy.add(seat)
            self._usage_changed()
            return seat
        return None

    # --- giving it back -------------------------------------------------------------------

    async def release(
        self, held: Held, *, plugin: PluginSpec, reason: str, trace: Trace, force: bool = False, retire: bool = False
    ) -> ReleaseReport:
        """The invocation is done with ``held``. A healthy pooled seat is kept for the next one;
        anything else goes back to the supervisor now (``force``: killed; ``retire``: never reused)."""
        held.uses += 1
        held.unreported += 1
        if held.pooled and not force and not retire and not held.done:
            self._keep_seat(held, plugin)
            trace.add(K.LEASE_RETURNED, f"{held.lease.worker_id}: seat kept for the next invocation")
            return ReleaseReport(removed=False)
        if held.pooled:
            held.done = held.done or reason
            self.seats.get(_key(plugin), _Seats()).busy.discard(held)
            if retire or force:
                self._retire_worker(held.lease.worker_id)
        return await self._give_back(held, reason=reason, trace=trace, force=force, retire=retire)

    def _keep_seat(self, held: Held, plugin: PluginSpec) -> None:
        """A seat is free (its invocation ended, or it was just leased): to the first caller in line,
        else kept idle for the next one."""
        seats = self.seats.setdefault(_key(plugin), _Seats(plugin.name))
        seats.busy.discard(held)
        while seats.waiters:
            waiter = seats.waiters.popleft()
            if not waiter.done():
                seats.busy.add(held)
                waiter.set_result(held)
                return
        held.allocation = None  # nobody in line: no invocation's trace gets its allocation's events
        if plugin.max_uses and held.uses >= plugin.max_uses:
            held.done = f"used {held.uses} times (max_uses)"
            self._background(self._give_back(held, reason=held.done, trace=None))
            return
        held.busy, held.idle_since = False, time.monotonic()
        seats.idle.append(held)
        self._usage_changed()

    def _retire_worker(self, worker_id: str) -> None:
        """Its worker misbehaved: its other seats held here are never handed out again."""
        for other in self.held.values():
            if other.lease.worker_id == worker_id and not other.done:
                other.done = "its worker misbehaved"
                if not other.busy:
                    self._background(self._give_back(other, reason=other.done, trace=None, retire=True))

    async def _give_back(
        self, held: Held, *, reason: str, trace: Trace | None, force: bool = False, retire: bool = False
    ) -> ReleaseReport:
        self.held.pop(held.lease.lease_id, None)
        for seats in self.seats.values():
            with contextlib.suppress(ValueError):
                seats.idle.remove(held)
        uses, held.unreported = held.unreported, 0
        return await worker_release(lease=held.lease, reason=reason, trace=trace, force=force, retire=retire, uses=uses)

    def _background(self, coroutine: Coroutine[Any, Any, ReleaseReport]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)

    # --- keeping them -----------------------------------------------------------------------

    def _usage_changed(self) -> None:
        self._report_due.set()

    async def _keep(self) -> None:
        """Renew held leases a few times per TTL (sooner after a change of use), return idle seats."""
        while True:
            interval = min((h.lease.ttl_s for h in self.held.values()), default=15.0) / 3
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._report_due.wait(), interval)
                await asyncio.sleep(USAGE_REPORT_DELAY_S)  # gather the changes of this moment
            self._report_due.clear()
            try:
                self._return_idle()
                await self._renew()
            except Exception:  # the keeper must outlive any one failure
                log.exception("renewing leases failed")

    def _return_idle(self) -> None:
        now = time.monotonic()
        for seats in self.seats.values():
            for seat in [s for s in seats.idle if now - s.idle_since >= LEASE_IDLE_RETURN_S]:
                seat.done = f"idle for {LEASE_IDLE_RETURN_S:g} s"
                self._background(self._give_back(seat, reason=seat.done, trace=None))

    async def _renew(self) -> None:
        by_supervisor: dict[str, list[Held]] = {}
        for held in self.held.values():
            by_supervisor.setdefault(held.lease.supervisor, []).append(held)
        for address, helds in by_supervisor.items():
            usages = []
            for held in helds:
                usages.append(sup_pb2.LeaseUsage(lease_id=held.lease.lease_id, busy=held.busy, uses=held.unreported))
                held.unreported = 0
            renewal = await leases_renew(address=address, usages=usages)
            if renewal is None:  # down: its workers are gone or will be reaped; calls on them fail as lost
                continue
            for lease_id in renewal.unknown:
                if (lost := self.held.pop(lease_id, None)) is not None:
                    lost.done = "its lease expired or was taken back"
            for lease_id, why in renewal.revoked.items():
                if (revoked := self.held.get(lease_id)) is not None:
                    revoked.done = why
                    if not revoked.busy:
                        self._background(self._give_back(revoked, reason=why, trace=None))

    async def close(self) -> None:
        """Give every kept seat back (the gateway is stopping)."""
        self._task.cancel()
        await asyncio.gather(
            *(
                self._give_back(h, reason="gateway stopping", trace=None)
                for h in list(self.held.values())
                if not h.busy
            ),
            return_exceptions=True,
        )


_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Keeper] = weakref.WeakKeyDictionary()


def keeper() -> Keeper:
    loop = asyncio.get_running_loop()
    if (found := _keepers.get(loop)) is None:
        found = _keepers[loop] = Keeper()
    return found


def seats_counts() -> dict[str, tuple[int, int, int]]:
    """(idle, busy, waiting) seats of each plugin, over every event loop's keeper in this process."""
    counts: dict[str, tuple[int, int, int]] = {}
    for found in list(_keepers.values()):
        for seats in list(found.seats.values()):
            idle, busy, waiting = counts.get(seats.plugin, (0, 0, 0))
            counts[seats.plugin] = (
                idle + sum(1 for held in seats.idle if not held.done),
                busy + len(seats.busy),
                waiting + len(seats.waiters),
            )
    return counts


metrics.seat_counts_source(seats_counts)

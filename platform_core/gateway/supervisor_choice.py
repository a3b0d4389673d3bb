"""Which supervisor of a runtime gets the next allocation: a per-process view of their capacity.

Several supervisors may serve one runtime (``SUPERVISORS=python=host:9092|host:9192``). The
gateway spreads allocations over them by free worker slots, without asking them on the request
path: the view is the last ``ListWorkers`` answer of each supervisor (refreshed in the
background when it is older than ``SUPERVISOR_LIST_INTERVAL_S``), corrected by this process's
own leases since then (+1 when an allocation starts, -1 when its worker is released). A
supervisor that did not answer is marked down for ``SUPERVISOR_DOWN_S`` and skipped while
others are up; one that answered "no capacity" counts as full until its next listing.

Plain data and arithmetic; the gRPC calls are in ``runtime_client``.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass


@dataclass
class SupervisorLoad:
    address: str
    # From ListWorkers; until the first answer, the gateway's own SUPERVISOR_MAX_WORKERS.
    max_workers: int
    # Workers of the last listing (every gateway's, idle pooled ones included) ...
    listed_workers: int = 0
    # ... and this process's leases at that moment: leases taken since then are on top of it.
    leases_at_listing: int = 0
    # Allocations of this process in flight or not yet released.
    leases: int = 0
    listed_at: float = -math.inf
    down_until: float = 0.0
    down_reason: str = ""
    listing: bool = False

    @property
    def free(self) -> int:
        return self.max_workers - self.listed_workers - (self.leases - self.leases_at_listing)

    def is_down(self, now: float) -> bool:
        return now < self.down_until


class CapacityView:
    def __init__(self) -> None:
        self._loads: dict[str, SupervisorLoad] = {}
        self._turn = itertools.count()

    def load(self, address: str, *, default_max_workers: int) -> SupervisorLoad:
        if (load := self._loads.get(address)) is None:
            load = self._loads[address] = SupervisorLoad(address, default_max_workers)
        return load

    def order(self, addresses: list[str], *, default_max_workers: int, now: float | None = None) -> list[str]:
        """The supervisors to try, best first: those up by most free slots (equals take turns),
        then, only if every one is marked down, all of them (soonest back first)."""
        if len(addresses) == 1:
            return addresses
        now = time.monotonic() if now is None else now
        loads = [self.load(a, default_max_workers=default_max_workers) for a in addresses]
        turn = next(self._turn)
        up = [(i, load) for i, load in enumerate(loads) if not load.is_down(now)]
        if up:
            up.sort(key=lambda item: (-item[1].free, (item[0] - turn) % len(loads)))
            return [load.address for _, load in up]
        return [load.address for load in sorted(loads, key=lambda load: load.down_until)]

    def stale(self, addresses: list[str], *, interval_s: float, now: float | None = None) -> list[str]:
        """Supervisors whose listing is older than ``interval_s`` and not being refreshed; they
        are marked as being refreshed (call ``listed`` or ``listing_failed`` afterwards)."""
        if len(addresses) == 1:
            return []  # nothing to choose between
        now = time.monotonic() if now is None else now
        due = []
        for address in addresses:
            load = self._loads.get(address)
            if load is not None and not load.listing and now - load.listed_at >= interval_s:
                load.listing = True
                due.append(address)
        return due

    # --- outcomes -------------------------------------------------------------------------

    def lease_started(self, address: str, *, default_max_workers: int) -> None:
        self.load(address, default_max_workers=default_max_workers).leases += 1

    def lease_ended(self, address: str) -> None:
        if (load := self._loads.get(address)) is not None:
            load.leases = max(load.leases - 1, 0)

    def listed(self, address: str, *, max_workers: int, workers: int, now: float | None = None) -> None:
        """A ListWorkers answer: the supervisor is up, with this many workers of ``max_workers``."""
        load = self.load(address, default_max_workers=max_workers)
        load.max_workers, load.listed_workers, load.leases_at_listing = max_workers, workers, load.leases
        load.listed_at = time.monotonic() if now is None else now
        load.down_until, load.down_reason, load.listing = 0.0, "", False

    def listing_failed(self, address: str) -> None:
        """The listing did not come (the caller marks the supervisor down if it is unreachable)."""
        if (load := self._loads.get(address)) is not None:
            load.listing = False

    def mark_down(self, address: str, *, reason: str, down_s: float, now: float | None = None) -> None:
        if (load := self._loads.get(address)) is not None:
            now = time.monotonic() if now is None else now
            load.down_until, load.down_reason = now + down_s, reason
            load.listed_at = now  # its listing is worthless; the next one is due after the interval

    def mark_full(self, address: str) -> None:
        """It answered "no capacity": no free slot until its next listing says otherwise."""
        if (load := self._loads.get(address)) is not None:
            load.listed_workers = load.max_workers
            load.leases_at_listing = load.leases
            load.listed_at = -math.inf  # list it again at the next chance


capacity_view = CapacityView()

"""Leases: who holds which worker (or seat of a pooled worker), until when.

Every allocation hands out a lease to its gateway (``AllocateWorker``), which renews it while it
holds it (``RenewLeases``, with its usage since the last renewal) and gives it back
(``ReleaseWorker``). A lease that is not renewed within its TTL has expired: its gateway is gone
(killed, partitioned) and will never give it back, so the supervisor takes the worker back
itself. The supervisor revokes a lease when it wants the worker back (recycled, retired, its
process died): the holder learns it at its next renewal and returns it once idle.
"""

from __future__ import annotations

import time
import uuid

from platform_core.supervisor.model import Lease, LeaseOwner, Worker


class LeaseBook:
    def __init__(self, *, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.leases: dict[str, Lease] = {}

    def grant(self, worker: Worker, *, owner: LeaseOwner | None, tenant: str) -> Lease:
        lease = Lease(uuid.uuid4().hex, worker.worker_id, owner, time.monotonic() + self.ttl_s, tenant)
        self.leases[lease.lease_id] = worker.leases[lease.lease_id] = lease
        return lease

    def take(self, worker: Worker, lease_id: str, owner: LeaseOwner | None) -> Lease | None:
        """Remove the lease being given back: ``lease_id``, else (older callers) one of ``owner``'s."""
        if not lease_id:
            lease_id = next((i for i, lease in worker.leases.items() if lease.owner == owner), "")
            if not lease_id and worker.leases:
                lease_id = next(iter(worker.leases))
        lease = worker.leases.pop(lease_id, None)
        self.leases.pop(lease_id, None)
        return lease

    def drop_all(self, worker: Worker) -> list[Lease]:
        for lease_id in worker.leases:
            self.leases.pop(lease_id, None)
        dropped, worker.leases = list(worker.leases.values()), {}
        return dropped

    def renew(self, owner: LeaseOwner | None, lease_id: str, *, busy: bool, now: float | None = None) -> Lease | None:
        """Extend a lease of ``owner``; None if it is not (or no longer) theirs."""
        lease = self.leases.get(lease_id)
        if lease is None or (owner is not None and lease.owner != owner):
            return None
        lease.expires_at, lease.busy = (time.monotonic() if now is None else now) + self.ttl_s, busy
        return lease

    def expired(self, now: float | None = None) -> list[Lease]:
        now = time.monotonic() if now is None else now
        return [lease for lease in self.leases.values() if lease.expires_at <= now]

    def of_instance(self, instance_id: str, *, started_before_ns: int) -> list[Lease]:
        """Leases of earlier lives of gateway ``instance_id`` (``ReclaimLeases``)."""
        return [
            lease
            for lease in self.leases.values()
            if lease.owner is not None and lease.owner[0] == instance_id and lease.owner[1] < started_before_ns
        ]

"""Leases with real workers: renewed by their holder, taken back when it stops renewing them,
revoked when the supervisor wants the worker back; a tenant's fair share of the slots."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest

from platform_core.supervisor.errors import CapacityExhausted
from platform_core.supervisor.model import PluginRef, PoolSpec, State
from platform_core.supervisor.service import Usage
from tests.supervisor.conftest import alive, make_supervisor

SUBTRACT = PluginRef(name="subtract_numbers", runtime="python", entrypoint="plugins.subtract_numbers:plugin")
POOLED = dataclasses.replace(SUBTRACT, pool=PoolSpec(min_idle=0, max_workers=2, max_concurrency=2, max_uses=3))
GATEWAY = ("gateway-a:8080", 1_000)


async def test_an_ephemeral_worker_whose_gateway_stops_renewing_is_taken_back(socket_root):
    supervisor = make_supervisor(socket_root, lease_ttl_s=1)
    kept, _, _, kept_lease = await supervisor.allocate(SUBTRACT, owner=GATEWAY)
    lost, _, _, lease = await supervisor.allocate(SUBTRACT, owner=("gateway-b:8080", 1))
    allocated = time.monotonic()
    assert await supervisor.expire_leases() == []  # both within their TTL
    # The clock is given, not waited for: a renews half a TTL later, and its lease runs from then.
    assert supervisor.renew(GATEWAY, [Usage(kept_lease.lease_id, busy=True)], now=allocated + 0.5).unknown == []

    taken = await supervisor.expire_leases(now=allocated + 1.2)  # b's TTL is over, a's is not
    assert taken == [lost.worker_id]
    assert lost.worker_id not in supervisor.workers and not alive(lost.pid)
    assert kept.worker_id in supervisor.workers
    assert supervisor.renew(("gateway-b:8080", 1), [Usage(lease.lease_id)]).unknown == [lease.lease_id]
    await supervisor.shutdown()


async def test_a_pooled_seat_whose_gateway_died_retires_its_worker(socket_root):
    supervisor = make_supervisor(socket_root, lease_ttl_s=5)
    worker, *_ = await supervisor.allocate(POOLED, owner=GATEWAY)
    assert await supervisor.expire_leases(now=time.monotonic() + 6) == [worker.worker_id]
    assert worker.worker_id not in supervisor.workers and not alive(worker.pid)
    fresh, _, warm, _ = await supervisor.allocate(POOLED, owner=("gateway-b:8080", 1))
    assert fresh.worker_id != worker.worker_id and not warm
    await supervisor.shutdown()


async def test_use_is_reported_at_renewal_and_recycling_revokes_the_seats(socket_root):
    supervisor = make_supervisor(socket_root)
    worker, _, _, lease = await supervisor.allocate(POOLED, owner=GATEWAY)
    assert supervisor.renew(GATEWAY, [Usage(lease.lease_id, busy=False, uses=1)]).revoked == {}
    assert worker.state == State.IDLE and worker.uses == 1 and worker.in_use == 1  # held, idle
    supervisor.renew(GATEWAY, [Usage(lease.lease_id, busy=True, uses=0)])
    assert worker.state == State.EXECUTING
    renewal = supervisor.renew(GATEWAY, [Usage(lease.lease_id, busy=False, uses=2)])  # 3 uses: max_uses
    assert "recycled" in renewal.revoked[lease.lease_id]
    disposal = await supervisor.release(worker.worker_id, lease_id=lease.lease_id, uses=0)
    assert disposal.events[-1].state == State.REMOVED and not alive(worker.pid)
    await supervisor.shutdown()


async def test_a_worker_that_dies_has_its_leases_revoked_and_its_cause_told(socket_root):
    supervisor = make_supervisor(socket_root)
    worker, _, _, first = await supervisor.allocate(POOLED, owner=GATEWAY)
    _, _, _, second = await supervisor.allocate(POOLED, owner=GATEWAY)  # a second seat, same worker
    os.kill(worker.pid, signal.SIGKILL)
    disposal = await supervisor.release(worker.worker_id, lease_id=first.lease_id, retire=True)
    assert disposal.exit_cause is not None and disposal.exit_cause.kind == "killed"
    assert "exited" in supervisor.renew(GATEWAY, [Usage(second.lease_id)]).revoked[second.lease_id]
    await supervisor.release(worker.worker_id, lease_id=second.lease_id)
    assert worker.worker_id not in supervisor.workers
    await supervisor.shutdown()


async def test_one_tenant_holds_at_most_its_share_while_others_use_the_supervisor(socket_root):
    supervisor = make_supervisor(socket_root, max_workers=4, tenant_share=0.5)
    alone = [await supervisor.allocate(SUBTRACT, tenant="acme") for _ in range(3)]  # alone: no cap
    for allocation in alone:
        await supervisor.release(allocation.worker.worker_id)
    await supervisor.allocate(SUBTRACT, tenant="globex")
    await supervisor.allocate(SUBTRACT, tenant="acme")
    await supervisor.allocate(SUBTRACT, tenant="acme")
    with pytest.raises(CapacityExhausted, match="fair share"):
        await supervisor.allocate(SUBTRACT, tenant="acme")
    await supervisor.allocate(SUBTRACT, tenant="globex")  # the rest is globex's
    await supervisor.shutdown()


async def test_a_tenant_that_took_every_slot_gives_the_next_free_one_to_a_tenant_that_was_refused(socket_root):
    """Issue 11, item 10: one tenant alone takes every slot; another asks and is refused (no slot
    free): from then on it is waiting, and the first tenant gets no new slot beyond its share."""
    supervisor = make_supervisor(socket_root, max_workers=4, tenant_share=0.5)
    acme = [await supervisor.allocate(SUBTRACT, tenant="acme") for _ in range(4)]  # alone: every slot
    with pytest.raises(CapacityExhausted, match=r"slots .* are in use"):
        await supervisor.allocate(SUBTRACT, tenant="globex")
    await supervisor.release(acme[0].worker.worker_id)
    with pytest.raises(CapacityExhausted, match="fair share"):
        await supervisor.allocate(SUBTRACT, tenant="acme")  # 3 held, its share is 2: globex waits
    await supervisor.allocate(SUBTRACT, tenant="globex")  # the freed slot is globex's
    await supervisor.shutdown()

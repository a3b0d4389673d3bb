"""Pooled workers with real worker processes: pre-warm, reuse, recycle, idle timeout, admission control."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal

import pytest

from platform_core.supervisor.errors import CapacityExhausted
from platform_core.supervisor.model import PluginRef, PoolSpec, State
from tests.supervisor.conftest import alive, make_supervisor
from tests.support.waits import wait_until

BASE = PluginRef(name="subtract_numbers", runtime="python", entrypoint="plugins.subtract_numbers:plugin")


def pooled(**spec) -> PluginRef:
    return dataclasses.replace(BASE, pool=PoolSpec(**{"min_idle": 0, "queue_timeout_s": 0.5, **spec}))


async def test_prewarm_starts_min_idle_workers_and_hands_them_out_warm(socket_root):
    supervisor = make_supervisor(socket_root)
    plugin = pooled(min_idle=2, max_workers=3)
    supervisor.prewarm(plugin)
    await wait_until(
        lambda: [w.state for w in supervisor.workers.values()] == [State.IDLE, State.IDLE], what="two idle workers"
    )

    worker, events, warm, _ = await supervisor.allocate(plugin)
    assert warm
    assert [e.state for e in events] == [State.EXECUTING], "a warm allocation spawns nothing"
    outcome = await supervisor.release(worker.worker_id, reason="done")
    assert [e.state for e in outcome.events] == [State.COMPLETED, State.IDLE]
    assert alive(worker.pid)
    again, _, warm_again, _ = await supervisor.allocate(plugin)
    assert warm_again
    assert again.uses == 1 or again.worker_id != worker.worker_id
    await supervisor.shutdown()
    assert not alive(worker.pid)


async def test_reuse_then_recycle_after_max_uses(socket_root):
    supervisor = make_supervisor(socket_root)
    plugin = pooled(max_workers=1, max_uses=3)
    seen = []
    for _ in range(3):
        worker, _, _, _ = await supervisor.allocate(plugin)
        seen.append((worker.worker_id, worker.pid))
        outcome = await supervisor.release(worker.worker_id)
    assert len(set(seen)) == 1, "one worker served all three"
    assert outcome.events[-1].state == State.REMOVED, "recycled after max_uses"
    assert not alive(seen[0][1])
    fresh, _, warm, _ = await supervisor.allocate(plugin)
    assert fresh.worker_id != seen[0][0]
    assert not warm
    await supervisor.shutdown()


async def test_a_worker_the_caller_saw_fail_is_never_handed_out_again(socket_root):
    supervisor = make_supervisor(socket_root)
    plugin = pooled(max_workers=2)
    worker, _, _, _ = await supervisor.allocate(plugin)
    outcome = await supervisor.release(worker.worker_id, reason="worker_lost", retire=True)
    assert outcome.events[-1].state == State.REMOVED
    other, _, _, _ = await supervisor.allocate(plugin)
    assert other.worker_id != worker.worker_id

    # A worker that dies while idle is dropped too.
    await supervisor.release(other.worker_id)
    os.kill(other.pid, signal.SIGKILL)
    await wait_until(lambda: other.worker_id not in supervisor.workers, what="the other worker gone")
    third, _, _, _ = await supervisor.allocate(plugin)
    assert third.worker_id not in {worker.worker_id, other.worker_id}
    await supervisor.shutdown()


async def test_idle_workers_beyond_min_idle_stop_after_the_idle_timeout(socket_root):
    supervisor = make_supervisor(socket_root)
    plugin = pooled(min_idle=1, max_workers=3, idle_timeout_s=0.2)
    leases = await asyncio.gather(*(supervisor.allocate(plugin) for _ in range(3)))
    for worker, *_ in leases:
        await supervisor.release(worker.worker_id)
    await wait_until(lambda: len(supervisor.workers) == 1, what="the pool back to min_idle")
    assert next(iter(supervisor.workers.values())).state == State.IDLE
    await supervisor.shutdown()


async def test_a_full_pool_queues_fairly_then_answers_capacity_exhausted(socket_root):
    supervisor = make_supervisor(socket_root)
    plugin = pooled(max_workers=1, queue_timeout_s=2.0)
    holder, _, _, _ = await supervisor.allocate(plugin)
    order = []

    async def wait_in_line(name: str) -> None:
        worker, _, warm, _ = await supervisor.allocate(plugin)
        order.append(name)
        assert warm
        assert worker.worker_id == holder.worker_id
        await supervisor.release(worker.worker_id)

    # In line in this order: each is queued (the pool records its waiters) before the next comes.
    queue = supervisor.pools.pools[plugin.pool_key].waiters
    first = asyncio.create_task(wait_in_line("first"))
    await wait_until(lambda: len(queue) == 1, what="the first allocation queued")
    second = asyncio.create_task(wait_in_line("second"))
    await wait_until(lambda: len(queue) == 2, what="the second allocation queued")
    await supervisor.release(holder.worker_id)
    await asyncio.gather(first, second)
    assert order == ["first", "second"]

    busy, _, _, _ = await supervisor.allocate(plugin)
    supervisor.pools.pools[plugin.pool_key].plugin = pooled(max_workers=1, queue_timeout_s=0.2)
    with pytest.raises(CapacityExhausted, match="busy"):
        await supervisor.allocate(pooled(max_workers=1, queue_timeout_s=0.2))
    await supervisor.release(busy.worker_id)
    await supervisor.shutdown()


async def test_concurrency_per_worker_is_bounded(socket_root):
    supervisor = make_supervisor(socket_root)
    plugin = pooled(max_workers=2, max_concurrency=2, queue_timeout_s=0.3)
    leases = [await supervisor.allocate(plugin) for _ in range(4)]
    per_worker: dict[str, int] = {}
    for worker, *_ in leases:
        per_worker[worker.worker_id] = per_worker.get(worker.worker_id, 0) + 1
    assert sorted(per_worker.values()) == [2, 2]
    with pytest.raises(CapacityExhausted):
        await supervisor.allocate(plugin)
    for worker, *_ in leases:
        await supervisor.release(worker.worker_id)
    assert all(w.in_use == 0 for w in supervisor.workers.values())
    await supervisor.shutdown()


async def test_cancel_removes_a_pooled_worker_from_its_pool(socket_root):
    supervisor = make_supervisor(socket_root)
    plugin = pooled(max_workers=1)
    worker, _, _, _ = await supervisor.allocate(plugin)
    await supervisor.cancel(worker.worker_id, reason="timeout")
    assert supervisor.pools.pools[plugin.pool_key].workers == []
    fresh, _, warm, _ = await supervisor.allocate(plugin)
    assert fresh.worker_id != worker.worker_id
    assert not warm
    await supervisor.shutdown()

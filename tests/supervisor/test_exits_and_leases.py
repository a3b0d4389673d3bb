"""Why a worker ended (exit causes), and leases of gateways that died (ReclaimLeases)."""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
import pytest

from platform_core.rpc import ppp_grpc, ppp_pb2
from platform_core.supervisor import exits
from platform_core.supervisor.backends import cgroups
from platform_core.supervisor.model import Limits, PluginRef, PoolSpec, State
from tests.supervisor.conftest import alive, make_supervisor

SUBTRACT = PluginRef(name="subtract_numbers", runtime="python", entrypoint="plugins.subtract_numbers:plugin")
SPINNER = PluginRef(
    name="cpu_spinner",
    runtime="python",
    entrypoint="plugins.hostile.cpu_spinner:plugin",
    limits=Limits(cpu_seconds=1),
)
POOLED = PluginRef(
    name="subtract_pooled",
    runtime="python",
    entrypoint="plugins.subtract_numbers:plugin",
    pool=PoolSpec(min_idle=0, max_workers=1, max_concurrency=2),
)
GATEWAY = ("gateway-a:8080", 1_000)


def test_causes_name_limits_signals_and_exits():
    limits = Limits(memory_bytes=256 * 1024 * 1024, cpu_seconds=3)
    assert exits.memory_limit(limits).detail == "worker exceeded its memory limit (256 MB) and was killed"
    assert exits.from_signal(signal.SIGXCPU, limits).kind == "cpu_time_limit"
    assert "(3 s)" in exits.from_signal(signal.SIGXCPU, limits).detail
    assert exits.from_signal(signal.SIGSEGV, limits) == exits.ExitCause("crashed", "worker crashed (SIGSEGV)")
    assert exits.from_signal(signal.SIGKILL, limits).kind == "killed"
    assert exits.from_status(3).detail == "worker exited by itself with code 3"


async def test_a_kill_from_outside_is_named_and_a_stop_of_ours_is_not(socket_root):
    supervisor = make_supervisor(socket_root)
    stopped, _, _, _ = await supervisor.allocate(SUBTRACT)
    assert (await supervisor.release(stopped.worker_id)).exit_cause is None
    cancelled, _, _, _ = await supervisor.allocate(SUBTRACT)
    assert (await supervisor.cancel(cancelled.worker_id)).exit_cause is None

    killed, _, _, _ = await supervisor.allocate(SUBTRACT)
    os.kill(killed.pid, signal.SIGKILL)
    outcome = await supervisor.release(killed.worker_id, retire=True)
    assert outcome.exit_cause is not None and outcome.exit_cause.kind == "killed"
    assert "SIGKILL, not by the platform" in outcome.exit_cause.detail
    await supervisor.shutdown()


async def test_the_cpu_time_limit_stops_a_spinner_and_says_so(socket_root):
    supervisor = make_supervisor(socket_root)
    worker, _, _, _ = await supervisor.allocate(SPINNER)
    async with grpc.aio.insecure_channel(worker.address) as channel:
        call = ppp_grpc.PluginWorkerStub(channel).Invoke(
            ppp_pb2.InvokeRequest(primitive="cpu_spinner", arguments=b"{}")
        )
        with pytest.raises(grpc.aio.AioRpcError):
            async for _ in call:
                pass
    outcome = await supervisor.release(worker.worker_id, retire=True)
    # Soft and hard RLIMIT_CPU are equal on this backend: the kernel sends SIGKILL, not SIGXCPU.
    assert outcome.exit_cause is not None
    assert (outcome.exit_code, outcome.exit_cause.kind) in {
        (-signal.SIGXCPU, "cpu_time_limit"),
        (-signal.SIGKILL, "killed"),
    }
    assert "CPU time limit (1 s)" in outcome.exit_cause.detail
    await supervisor.shutdown()


async def test_reclaim_stops_what_an_earlier_life_of_a_gateway_holds(socket_root):
    supervisor = make_supervisor(socket_root)
    instance, started = GATEWAY
    earlier, _, _, _ = await supervisor.allocate(SUBTRACT, owner=(instance, started))
    current, _, _, _ = await supervisor.allocate(SUBTRACT, owner=(instance, started + 10))
    other, _, _, _ = await supervisor.allocate(SUBTRACT, owner=("gateway-b:8080", started))
    released, _, _, _ = await supervisor.allocate(SUBTRACT, owner=(instance, started))
    await supervisor.release(released.worker_id, owner=(instance, started))

    reclaimed, events = await supervisor.reclaim(instance, started_before_ns=started + 5)

    assert reclaimed == [earlier.worker_id]
    assert events[-1].state == State.REMOVED and not alive(earlier.pid)
    assert set(supervisor.workers) == {current.worker_id, other.worker_id}
    assert await supervisor.reclaim(instance, started_before_ns=started + 5) == ([], [])
    await supervisor.shutdown()


async def test_reclaim_retires_a_pooled_worker_once_its_live_users_are_done(socket_root):
    supervisor = make_supervisor(socket_root)
    dead, live = ("gateway-a:8080", 1), ("gateway-b:8080", 1)
    worker, _, _, _ = await supervisor.allocate(POOLED, owner=dead)
    same, _, warm, _ = await supervisor.allocate(POOLED, owner=live)
    assert same is worker and warm

    assert (await supervisor.reclaim("gateway-a:8080", started_before_ns=2))[0] == [worker.worker_id]
    assert worker.retiring and worker.in_use == 1 and alive(worker.pid)  # its live user goes on
    await supervisor.release(worker.worker_id, owner=live)
    assert worker.worker_id not in supervisor.workers and not alive(worker.pid)
    await supervisor.shutdown()


@pytest.mark.skipif(not cgroups.available(), reason="no pids cgroups here (needs root)")
async def test_a_worker_lives_in_a_pids_cgroup_that_goes_with_it(socket_root):
    supervisor = make_supervisor(socket_root)
    worker, _, _, _ = await supervisor.allocate(
        PluginRef(name="s", runtime="python", entrypoint="plugins.subtract_numbers:plugin", limits=Limits(pids=40))
    )
    group = worker.runtime_state["cgroup"]
    assert (group / "pids.max").read_text().strip() == "40"
    assert worker.pid in [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
    await supervisor.release(worker.worker_id)
    assert not group.exists()
    await supervisor.shutdown()
    assert not group.parent.exists(), "the supervisor's cgroups outlived its shutdown"
    await asyncio.sleep(0)

"""The supervisor with the process backend and real worker processes, in-process and over gRPC."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from platform_core.rpc import sup_grpc, sup_pb2
from platform_core.supervisor import grpc_service
from platform_core.supervisor.backends.process import Launcher, ProcessBackend, default_launchers
from platform_core.supervisor.errors import CapacityExhausted, WorkerFailedToStart, WorkerNotReady
from platform_core.supervisor.model import Limits, PluginRef, State
from tests.supervisor.conftest import alive, make_supervisor
from tests.support.platform import REPO, free_port, wait_for_port
from tests.support.waits import wait_for, wait_until

SUBTRACT = PluginRef(name="subtract_numbers", runtime="python", entrypoint="plugins.subtract_numbers:plugin")


async def test_allocate_and_release_walk_the_seed_lifecycle(socket_root):
    supervisor = make_supervisor(socket_root)
    worker, events, warm, _ = await supervisor.allocate(SUBTRACT)
    assert not warm

    assert worker.worker_id == "worker-20001"
    assert [e.state for e in events] == [
        State.REQUESTED,
        State.ALLOCATING,
        State.SPAWNING,
        State.STARTING,
        State.READY,
        State.EXECUTING,
    ]
    assert alive(worker.pid)
    assert worker.address.startswith("unix://") and Path(worker.address[7:]).exists()

    outcome = await supervisor.release(worker.worker_id, reason="done")
    assert [e.state for e in outcome.events] == [State.COMPLETED, State.RELEASING, State.STOPPING, State.REMOVED]
    assert outcome.exit_code == 0
    assert not alive(worker.pid)
    assert not Path(worker.address[7:]).parent.exists(), "the private socket directory is removed"
    assert supervisor.workers == {}
    second, _, _, _ = await supervisor.allocate(SUBTRACT)
    assert second.worker_id == "worker-20002"
    await supervisor.shutdown()


async def test_worker_gets_its_resource_limits(socket_root):
    supervisor = make_supervisor(socket_root)
    plugin = PluginRef(
        name="subtract_numbers",
        runtime="python",
        entrypoint="plugins.subtract_numbers:plugin",
        limits=Limits(memory_bytes=300 * 1024 * 1024, cpu_seconds=7),
    )
    worker, _, _, _ = await supervisor.allocate(plugin)
    limits = Path(f"/proc/{worker.pid}/limits").read_text()
    assert f"{300 * 1024 * 1024}" in next(line for line in limits.splitlines() if "address space" in line)
    assert " 7 " in next(line for line in limits.splitlines() if "cpu time" in line)
    assert os.getpgid(worker.pid) == worker.pid, "the worker leads its own process group"
    environ = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
    assert not any(entry.startswith(b"DJANGO_") for entry in environ), "the supervisor's environment is not leaked"
    await supervisor.shutdown()


async def test_bad_entrypoint_fails_with_the_workers_own_error(socket_root):
    supervisor = make_supervisor(socket_root)
    with pytest.raises(WorkerFailedToStart) as caught:
        await supervisor.allocate(PluginRef(name="x", runtime="python", entrypoint="plugins.no_such_module:plugin"))
    assert "exited with code" in str(caught.value)
    assert "No module named 'plugins.no_such_module'" in str(caught.value)
    assert supervisor.workers == {}
    await supervisor.shutdown()  # stops the zygote the allocation started


async def test_a_worker_that_never_gets_ready_is_removed_after_the_deadline(socket_root):
    never_ready = {"python": Launcher(argv=["sleep", "60"], cwd=REPO)}
    supervisor = make_supervisor(socket_root, launchers=never_ready, ready_timeout_s=0.5)
    watcher = supervisor.watch()
    started = time.monotonic()
    with pytest.raises(WorkerNotReady):
        await supervisor.allocate(SUBTRACT)
    assert time.monotonic() - started < 3
    assert supervisor.workers == {}
    await watcher.aclose()


async def test_capacity_is_bounded(socket_root):
    supervisor = make_supervisor(socket_root, max_workers=1)
    await supervisor.allocate(SUBTRACT)
    with pytest.raises(CapacityExhausted):
        await supervisor.allocate(SUBTRACT)
    await supervisor.shutdown()


async def test_cancel_kills_at_once_and_crashes_are_noticed(socket_root):
    supervisor = make_supervisor(socket_root)
    events = []

    async def watch():
        async for event in supervisor.watch():
            events.append(event)

    watching = asyncio.create_task(watch())
    first, _, _, _ = await supervisor.allocate(SUBTRACT)
    outcome = await supervisor.cancel(first.worker_id, reason="timeout")
    assert [e.state for e in outcome.events] == [State.FAILED, State.STOPPING, State.REMOVED]
    assert outcome.exit_code == -signal.SIGKILL

    second, _, _, _ = await supervisor.allocate(SUBTRACT)
    os.kill(second.pid, signal.SIGKILL)
    await wait_until(lambda: second.state == State.FAILED, what="the killed worker marked failed", timeout_s=2)
    released = await supervisor.release(second.worker_id)
    assert released.events[-1].state == State.REMOVED
    await supervisor.shutdown()
    await asyncio.wait_for(watching, 2)
    assert any(e.worker_id == second.worker_id and "unexpectedly" in e.detail for e in events)


async def test_shutdown_stops_every_worker(socket_root):
    supervisor = make_supervisor(socket_root)
    workers = [w for w, *_ in await asyncio.gather(*(supervisor.allocate(SUBTRACT) for _ in range(3)))]
    await supervisor.shutdown()
    assert not any(alive(w.pid) for w in workers)
    with pytest.raises(CapacityExhausted):
        await supervisor.allocate(SUBTRACT)


async def test_orphans_of_an_earlier_life_are_reaped(socket_root):
    earlier = ProcessBackend(supervisor_id="python-test", socket_root=socket_root)
    supervisor = make_supervisor(socket_root)
    worker, _, _, _ = await supervisor.allocate(SUBTRACT)
    # The supervisor "crashes": its bookkeeping is gone, the worker process is not.
    supervisor.workers.clear()
    assert await earlier.reap_orphans() == 1
    await worker.runtime_state["process"].wait()
    assert not alive(worker.pid)
    assert list((socket_root / "python-test").iterdir()) == []


async def test_grpc_adapter_maps_errors_to_status_codes(socket_root):
    supervisor = make_supervisor(socket_root, max_workers=1)
    server = grpc.aio.server()
    grpc_service.add_to_server(server, supervisor)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = sup_grpc.RuntimeSupervisorStub(channel)
        ref = sup_pb2.PluginRef(name=SUBTRACT.name, runtime="python", entrypoint=SUBTRACT.entrypoint)
        allocated = await stub.AllocateWorker(sup_pb2.AllocateWorkerRequest(plugin=ref))
        assert allocated.worker.worker_id == "worker-20001" and not allocated.worker.warm
        with pytest.raises(grpc.aio.AioRpcError) as full:
            await stub.AllocateWorker(sup_pb2.AllocateWorkerRequest(plugin=ref))
        assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        listed = await stub.ListWorkers(sup_pb2.ListWorkersRequest())
        assert [w.worker_id for w in listed.workers] == ["worker-20001"]
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.ReleaseWorker(sup_pb2.ReleaseWorkerRequest(worker_id="worker-1"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        wrong = sup_pb2.PluginRef(name="add_numbers", runtime="java", entrypoint="x")
        with pytest.raises(grpc.aio.AioRpcError) as java:
            await stub.AllocateWorker(sup_pb2.AllocateWorkerRequest(plugin=wrong))
        assert java.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        released = await stub.ReleaseWorker(sup_pb2.ReleaseWorkerRequest(worker_id="worker-20001"))
        assert sup_pb2.WorkerState.Name(released.events[-1].state) == "REMOVED"
    await supervisor.shutdown()
    await server.stop(None)


def test_a_killed_supervisor_takes_its_workers_with_it(socket_root):
    port = free_port()
    env = {**os.environ, "SUPERVISOR_SOCKET_ROOT": str(socket_root), "PLATFORM_VAR_DIR": str(socket_root)}
    command = [sys.executable, "manage.py", "runsupervisor", "--runtime", "python", "--listen", f"127.0.0.1:{port}"]
    supervisor = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, supervisor)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = sup_grpc.RuntimeSupervisorStub(channel)
            ref = sup_pb2.PluginRef(name=SUBTRACT.name, runtime="python", entrypoint=SUBTRACT.entrypoint)
            stub.AllocateWorker(sup_pb2.AllocateWorkerRequest(plugin=ref))
            pid = stub.ListWorkers(sup_pb2.ListWorkersRequest()).workers[0].pid
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait()
        wait_for(lambda: not alive(pid), what="the worker died with its supervisor (PR_SET_PDEATHSIG)", timeout_s=5)
        # A new life cleans the directories the old one left.
        supervisor = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
        wait_for_port(port, supervisor)
        assert list((socket_root / f"python-{port}").iterdir()) == []
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=20)


def test_default_launchers_cover_the_builtin_runtimes():
    assert set(default_launchers()) == {"python", "java", "node"}

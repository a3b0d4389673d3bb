"""Stem cells on the process backend: workers started ahead with no plugin, bound at allocation.

Real supervisors, real workers (the Java worker's JVM, the Python SDK), real sockets and cgroups.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

import grpc
import pytest

from platform_core.rpc import ppp_grpc, ppp_pb2
from platform_core.supervisor.backends import process as process_backend
from platform_core.supervisor.backends.process import ProcessBackend, _cpu_seconds
from platform_core.supervisor.errors import WorkerFailedToStart
from platform_core.supervisor.model import Limits, PluginRef, State, Worker
from platform_core.supervisor.service import Supervisor
from platform_core.supervisor.stemcells import StemCellPlan, parse_plans
from tests.supervisor.conftest import alive
from tests.support.platform import REPO
from tests.support.workers import invoke_once, running

JAR = REPO / "plugin_workers" / "java" / "build" / "ppp-java-worker.jar"
ADD = PluginRef(name="add_numbers", runtime="java", entrypoint="add_numbers")


def java_supervisor(socket_root: Path, *, count: int = 1, memory_mb: tuple[int, ...] = (256,), **options) -> Supervisor:
    if not JAR.exists():
        pytest.fail(f"{JAR.relative_to(REPO)} is missing: run plugin_workers/java/build.sh")
    backend = ProcessBackend(supervisor_id="java-stem", socket_root=socket_root, **options)
    return Supervisor(
        runtime="java",
        supervisor_id="java-stem",
        backends={"process": backend},
        default_backend="process",
        stem_cells=[StemCellPlan(backend="process", count=count, memory_mb=memory_mb)],
    )


def stem_cells(supervisor: Supervisor) -> list[Worker]:
    return [w for w in supervisor.workers.values() if w.state == State.STEM_CELL]


async def wait_until(predicate, *, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout_s:g} s: {what}"
        await asyncio.sleep(0.01)


async def invoke(worker: Worker, primitive: str, arguments: dict, timeout_s: float = 20) -> dict:
    return await invoke_once(worker.address, primitive, arguments, timeout_s=timeout_s)


def test_stem_cell_settings_are_parsed_per_runtime_and_backend():
    plans = parse_plans("java/process=2, python/docker=1,java/docker=0", "java", memory_mb=(256, 512))
    assert plans == [StemCellPlan(backend="process", count=2, memory_mb=(256, 512))]
    assert parse_plans("", "java", memory_mb=(256,)) == []
    with pytest.raises(ValueError, match="runtime/backend=count"):
        parse_plans("java=2", "java", memory_mb=(256,))


@pytest.mark.java
async def test_a_java_stem_cell_is_bound_to_the_plugin_serves_once_and_is_refilled(socket_root):
    async with running(java_supervisor(socket_root)) as supervisor:
        await wait_until(lambda: len(stem_cells(supervisor)) == 1, what="a stem cell is ready")
        stem = stem_cells(supervisor)[0]
        assert supervisor._free_slots() == supervisor.max_workers, "a waiting stem cell holds no slot"
        async with grpc.aio.insecure_channel(stem.address) as channel:  # PPP up, no plugin
            health = await ppp_grpc.PluginWorkerStub(channel).Health(ppp_pb2.HealthRequest(), timeout=5)
            assert health.status == ppp_pb2.HealthResponse.NOT_SERVING and not health.primitives

        started = time.monotonic()
        worker, events, _, _ = await supervisor.allocate(ADD)
        allocation_ms = (time.monotonic() - started) * 1000
        assert worker is stem and worker.plugin == ADD and not worker.stem_cell
        allocating = next(e.detail for e in events if e.state == State.ALLOCATING)
        assert "from stem cell" in allocating
        states = [e.state for e in events]
        assert states == [State.REQUESTED, State.ALLOCATING, State.STARTING, State.READY, State.EXECUTING]
        assert allocation_ms < 1000, f"binding took {allocation_ms:.0f} ms"
        assert (await invoke(worker, "add_numbers", {"operand1": 2, "operand2": 3}))["result"] == 5.0

        # The next stem cell starts in the background; the used one is destroyed on release.
        await wait_until(lambda: len(stem_cells(supervisor)) == 1, what="the stem cell is refilled")
        assert stem_cells(supervisor)[0] is not worker
        pid = worker.pid
        await supervisor.release(worker.worker_id)
        assert worker.worker_id not in supervisor.workers and not alive(pid)
    assert not supervisor.workers


@pytest.mark.java
async def test_without_a_ready_stem_cell_an_allocation_spawns_and_never_waits(socket_root):
    async with running(java_supervisor(socket_root, memory_mb=(256,))) as supervisor:
        # Another limit class than the stem cells' (the JVM's heap is fixed at its start): spawned.
        other = dataclasses.replace(ADD, limits=Limits(memory_bytes=192 * 1024 * 1024))
        worker, events, _, _ = await supervisor.allocate(other)
        assert "spawned" in next(e.detail for e in events if e.state == State.ALLOCATING)
        assert "-Xmx96m" in Path(f"/proc/{worker.pid}/cmdline").read_bytes().decode().split("\0")
        await supervisor.release(worker.worker_id)
        # All stem cells taken (none ready yet right after start): spawned as well, at once.
        supervisor.stem_cells._kinds.clear()
        worker, events, _, _ = await supervisor.allocate(ADD)
        assert "spawned" in next(e.detail for e in events if e.state == State.ALLOCATING)
        await supervisor.release(worker.worker_id)


def java_pid(worker: Worker) -> int:
    """The JVM of a worker (under a sandbox, bwrap's descendant)."""
    for pid in [worker.pid, *process_backend._descendants(worker.pid)]:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "java":
                return pid
    raise AssertionError(f"no JVM under {worker.pid}")


def limit_of(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            return line[len(name) :].split()[0]
    raise AssertionError(f"no {name} in /proc/{pid}/limits")


@pytest.mark.java
async def test_a_bound_stem_cell_has_the_plugins_limits_not_the_stem_cells(socket_root):
    async with running(java_supervisor(socket_root)) as supervisor:
        await wait_until(lambda: len(stem_cells(supervisor)) == 1, what="a stem cell is ready")
        stem = stem_cells(supervisor)[0]
        jvm = java_pid(stem)
        assert limit_of(jvm, "Max cpu time") == "unlimited"
        plugin = dataclasses.replace(ADD, limits=Limits(pids=40, cpu_seconds=5))
        worker, _events, _, _ = await supervisor.allocate(plugin)
        assert worker is stem
        # CPU seconds count from binding: what the JVM used to start is not the plugin's.
        used = _cpu_seconds(jvm)
        cap = int(limit_of(jvm, "Max cpu time"))
        assert cap - 5 <= used + 1 and cap >= used + 4, (cap, used)
        if (group := worker.runtime_state.get("cgroup")) is not None:
            assert (group / "pids.max").read_text().strip() == "40"
            assert jvm in [int(p) for p in (group / "cgroup.procs").read_text().split()]
        assert (await invoke(worker, "add_numbers", {"operand1": 1, "operand2": 1}))["result"] == 2.0
        await supervisor.release(worker.worker_id)


@pytest.mark.java
async def test_a_stem_cell_that_cannot_load_the_plugin_fails_the_allocation_and_leaves_nothing(socket_root):
    async with running(java_supervisor(socket_root)) as supervisor:
        await wait_until(lambda: len(stem_cells(supervisor)) == 1, what="a stem cell is ready")
        stem = stem_cells(supervisor)[0]
        pid = stem.pid
        with pytest.raises(WorkerFailedToStart, match="no_such_plugin"):
            await supervisor.allocate(dataclasses.replace(ADD, entrypoint="no_such_plugin"))
        assert stem.worker_id not in supervisor.workers and not alive(pid)
        assert not any(socket_root.glob(f"java-stem/{stem.worker_id}-*"))


@pytest.mark.java
async def test_a_restarted_supervisor_reaps_the_stem_cells_of_its_earlier_life(socket_root):
    first = java_supervisor(socket_root)
    await first.start()
    await wait_until(lambda: len(stem_cells(first)) == 1, what="a stem cell is ready")
    pid = stem_cells(first)[0].pid
    await first.stem_cells.close()  # its refills end, as they would with its process
    # The same supervisor id starting again (after a crash): the earlier life's stem cells go.
    second = java_supervisor(socket_root, count=0)
    try:
        await second.start()
        await wait_until(lambda: not alive(pid), what="the stem cell is killed")
        assert not any((socket_root / "java-stem").iterdir()), "its directory is removed"
    finally:
        await second.shutdown()
        await first.shutdown()


# --- Python stem cells (process backend): isolation and the plugin's limits -----------------

MIB = 1024 * 1024
MARKER = PluginRef(
    name="hostile_marker",
    runtime="python",
    entrypoint="plugins.hostile.marker:plugin",
    limits=Limits(memory_bytes=256 * MIB),
)
HOG = PluginRef(
    name="hostile_memory_hog",
    runtime="python",
    entrypoint="plugins.hostile.memory_hog:plugin",
    limits=Limits(memory_bytes=256 * MIB),
)
BOMB = PluginRef(
    name="hostile_fork_bomb",
    runtime="python",
    entrypoint="plugins.hostile.fork_bomb:plugin",
    limits=Limits(memory_bytes=256 * MIB, pids=24),
)


def python_supervisor(socket_root: Path, *, count: int = 1) -> Supervisor:
    backend = ProcessBackend(supervisor_id="python-stem", socket_root=socket_root)
    return Supervisor(
        runtime="python",
        supervisor_id="python-stem",
        backends={"process": backend},
        default_backend="process",
        stem_cells=[StemCellPlan(backend="process", count=count, memory_mb=(256,))],
    )


async def allocate_from_stem_cell(supervisor: Supervisor, plugin: PluginRef) -> Worker:
    await wait_until(lambda: len(stem_cells(supervisor)) >= 1, what="a stem cell is ready")
    worker, events, _, _ = await supervisor.allocate(plugin)
    assert any("from stem cell" in e.detail for e in events if e.state == State.ALLOCATING)
    return worker


async def test_a_stem_cell_serves_one_invocation_and_nothing_of_it_reaches_the_next(socket_root):
    async with running(python_supervisor(socket_root)) as supervisor:
        first = await allocate_from_stem_cell(supervisor, MARKER)
        answer = await invoke(first, "marker", {"label": "first"})
        assert answer["found"] == {"file": "", "global": [], "environment": ""}
        # Within the same worker the marker is there (the plugin does leave state behind) ...
        again = await invoke(first, "marker", {"label": "again"})
        assert again["found"]["file"] == "first" and again["found"]["global"] == ["first"]
        temp_dir = Path(answer["temp_dir"])
        await supervisor.release(first.worker_id)
        assert not first.runtime_state["directory"].exists(), "the worker's directory went with it"

        # ... but the next stem cell, bound to the same plugin, has none of it.
        second = await allocate_from_stem_cell(supervisor, MARKER)
        assert second is not first and second.pid != first.pid
        answer = await invoke(second, "marker", {"label": "second"})
        assert answer["found"] == {"file": "", "global": [], "environment": ""}
        assert Path(answer["temp_dir"]) != temp_dir
        await supervisor.release(second.worker_id)
    assert not supervisor.workers


async def test_a_memory_hog_bound_to_a_stem_cell_meets_the_plugins_memory_limit(socket_root):
    async with running(python_supervisor(socket_root)) as supervisor:
        worker = await allocate_from_stem_cell(supervisor, HOG)
        answer = await invoke(worker, "memory_hog", {})
        assert answer["failed"] == "out_of_memory", answer
        assert "256 MB" in answer["message"], "the plugin's limit, not the stem cell's (none)"
        await supervisor.release(worker.worker_id)


async def test_a_stem_cell_bound_to_a_fork_bomb_is_in_a_pids_cgroup_with_the_plugins_limit(socket_root):
    """The bomb itself goes off in a container (tests/docker/test_stemcells_docker.py): a spawned,
    sandboxed Python worker cannot read its pids.max (cgroup v1 view), and the plugin refuses to
    fork without seeing a limit. Here: the limit is the plugin's and holds every process."""
    supervisor = python_supervisor(socket_root)
    if supervisor.backends["process"]._cgroups is None:
        pytest.skip("no pids cgroups here (needs root and a pids hierarchy)")
    await supervisor.start()
    try:
        await wait_until(lambda: len(stem_cells(supervisor)) >= 1, what="a stem cell is ready")
        group = stem_cells(supervisor)[0].runtime_state["cgroup"]
        assert (group / "pids.max").read_text().strip() == "128", "the stem cell's own limit before binding"
        worker = await allocate_from_stem_cell(supervisor, BOMB)
        assert worker.runtime_state["cgroup"] == group
        assert (group / "pids.max").read_text().strip() == "24", "the plugin's limit, not the stem cell's"
        members = {int(pid) for pid in (group / "cgroup.procs").read_text().split()}
        assert {worker.pid, *process_backend._descendants(worker.pid)} <= members
        await supervisor.release(worker.worker_id)
    finally:
        await supervisor.shutdown()


# --- the SDKs' stem mode on its own (what the supervisor relies on) --------------------------

STEM_COMMANDS = {
    "python": [sys.executable, "-s", "-m", "ppp_sdk"],
    "java": ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-jar", str(JAR)],
}


@pytest.mark.parametrize(
    ("runtime", "entrypoint", "primitive"),
    [
        ("python", "plugins.subtract_numbers:plugin", "subtract_numbers"),
        pytest.param("java", "add_numbers", "add_numbers", marks=pytest.mark.java),
    ],
)
async def test_the_sdks_stem_mode_serves_nothing_until_bound_and_refuses_a_bad_binding(
    tmp_path, runtime, entrypoint, primitive
):
    if runtime == "java" and not JAR.exists():
        pytest.fail(f"{JAR.relative_to(REPO)} is missing: run plugin_workers/java/build.sh")
    cwd = REPO / "plugin_workers" / "python"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(cwd)}
    for bad in (False, True):
        control, socket = tmp_path / f"stem-{bad}.sock", tmp_path / f"worker-{bad}.sock"
        process = await asyncio.create_subprocess_exec(
            *STEM_COMMANDS[runtime], "--stem", str(control), "--unix", str(socket), cwd=cwd, env=env
        )
        try:
            await wait_until(control.exists, what="the control socket")
            async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
                stub = ppp_grpc.PluginWorkerStub(channel)
                health = await stub.Health(ppp_pb2.HealthRequest(), timeout=10)
                assert health.status == ppp_pb2.HealthResponse.NOT_SERVING
                assert not (await stub.Init(ppp_pb2.InitRequest(), timeout=10)).ok
            reader, writer = await asyncio.open_unix_connection(str(control))
            writer.write(json.dumps({"entrypoint": "no.such:plugin" if bad else entrypoint}).encode() + b"\n")
            answer = (await reader.readline()).decode()
            writer.close()
            if bad:
                assert answer.startswith("error "), answer
                assert await asyncio.wait_for(process.wait(), 10) == 2
                continue
            assert answer == "ok\n" and not control.exists()
            async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
                health = await ppp_grpc.PluginWorkerStub(channel).Health(ppp_pb2.HealthRequest(), timeout=10)
            assert health.status == ppp_pb2.HealthResponse.SERVING and list(health.primitives) == [primitive]
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()


async def test_a_stem_cell_that_dies_waiting_is_removed_and_replaced(socket_root):
    async with running(python_supervisor(socket_root)) as supervisor:
        await wait_until(lambda: len(stem_cells(supervisor)) == 1, what="a stem cell is ready")
        dead = stem_cells(supervisor)[0]
        os.killpg(dead.pid, signal.SIGKILL)
        await wait_until(
            lambda: dead.worker_id not in supervisor.workers and len(stem_cells(supervisor)) == 1,
            what="the dead stem cell is removed and another is ready",
        )
        assert not dead.runtime_state["directory"].exists()
        worker = await allocate_from_stem_cell(supervisor, MARKER)
        assert worker is not dead
        await supervisor.release(worker.worker_id)

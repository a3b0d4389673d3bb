"""Stem cells on the docker backend, in-process supervisors with real containers: a container
started ahead with its worker program waiting, bound at allocation (``docker update``, then the
plugin), one invocation, removed; the plugin's limits hold; nothing is left behind."""

from __future__ import annotations

import asyncio
import itertools
import os
import time

import grpc
import pytest

from platform_core.supervisor.backends.docker import LABEL_PLUGIN, DockerBackend
from platform_core.supervisor.model import Limits, PluginRef, State, Worker
from platform_core.supervisor.service import Supervisor
from platform_core.supervisor.stemcells import StemCellPlan
from tests.docker.conftest import (
    JAVA_IMAGE,
    PYTHON_IMAGE,
    SESSION_SUPERVISORS,
    containers_of,
    require_image,
    wait_until_gone,
)
from tests.support.workers import invoke_once, running

pytestmark = pytest.mark.docker

MIB = 1024 * 1024
_ids = itertools.count(1)


def hostile(primitive: str, **limits) -> PluginRef:
    return PluginRef(
        name=f"hostile_{primitive}",
        runtime="python",
        entrypoint=f"plugins.hostile.{primitive}:plugin",
        image=PYTHON_IMAGE,
        limits=Limits(memory_bytes=128 * MIB, **limits),
    )


@pytest.fixture
def make_supervisor(docker_client, socket_root):
    """Docker-backend supervisors keeping one stem cell of the 128 MiB class; checked for leftovers."""
    require_image(docker_client, PYTHON_IMAGE)
    made: list[Supervisor] = []

    def make(runtime: str = "python", supervisor_id: str | None = None, count: int = 1) -> Supervisor:
        supervisor_id = supervisor_id or f"ds{os.getpid()}-{next(_ids)}"
        SESSION_SUPERVISORS.add(supervisor_id)
        backend = DockerBackend(supervisor_id=supervisor_id, client=docker_client, socket_root=socket_root)
        supervisor = Supervisor(
            runtime=runtime,
            supervisor_id=supervisor_id,
            backends={"docker": backend},
            default_backend="docker",
            stem_cells=[StemCellPlan(backend="docker", count=count, memory_mb=(128,))],
        )
        made.append(supervisor)
        return supervisor

    yield make
    ids = {s.supervisor_id for s in made}
    left = wait_until_gone(docker_client, ids)
    for container in left:
        docker_client.api.remove_container(container["Id"], force=True)
    assert not left, f"containers left behind: {[c['Names'] for c in left]}"


async def ready_stem_cell(supervisor: Supervisor, timeout_s: float = 60) -> Worker:
    deadline = time.monotonic() + timeout_s
    while True:
        cells = [w for w in supervisor.workers.values() if w.state == State.STEM_CELL]
        if cells:
            return cells[0]
        assert time.monotonic() < deadline, "no stem cell became ready"
        await asyncio.sleep(0.02)


async def invoke(worker: Worker, primitive: str, arguments: dict, timeout_s: float = 20) -> dict:
    return await invoke_once(worker.address, primitive, arguments, timeout_s=timeout_s)


async def test_a_container_stem_cell_serves_one_invocation_and_nothing_reaches_the_next(make_supervisor, docker_client):
    async with running(make_supervisor()) as supervisor:
        stem = await ready_stem_cell(supervisor)
        (container,) = containers_of(docker_client, supervisor.supervisor_id)
        assert container["Labels"][LABEL_PLUGIN] == "(stem cell)"
        marker = hostile("marker")
        first, events, _, _ = await supervisor.allocate(marker)
        assert first is stem
        assert "from stem cell" in next(e.detail for e in events if e.state == State.ALLOCATING)
        answer = await invoke(first, "marker", {"label": "first"})
        assert answer["found"] == {"file": "", "global": [], "environment": ""}
        assert (await invoke(first, "marker", {"label": "again"}))["found"]["file"] == "first"
        await supervisor.release(first.worker_id)

        second = await ready_stem_cell(supervisor)
        worker, _, _, _ = await supervisor.allocate(marker)
        assert worker is second and second is not first
        answer = await invoke(worker, "marker", {"label": "second"})
        assert answer["found"] == {"file": "", "global": [], "environment": ""}, "a fresh container"
        await supervisor.release(worker.worker_id)
    assert not containers_of(docker_client, supervisor.supervisor_id)


async def test_binding_applies_the_plugins_limits_by_docker_update(make_supervisor, docker_client):
    async with running(make_supervisor()) as supervisor:
        stem = await ready_stem_cell(supervisor)
        container_id = stem.runtime_state["container"].id
        before = docker_client.api.inspect_container(container_id)["HostConfig"]
        assert (before["CpuShares"], before["PidsLimit"]) == (2, 128), "least CPU weight, the stem cells' pids"
        worker, _, _, _ = await supervisor.allocate(hostile("marker", pids=48, cpus=0.5))
        after = docker_client.api.inspect_container(container_id)["HostConfig"]
        assert (after["CpuShares"], after["PidsLimit"], after["NanoCpus"]) == (1024, 48, 500_000_000)
        assert after["Memory"] == 128 * MIB, "the class's memory: the plugin's"
        await supervisor.release(worker.worker_id)


async def test_a_fork_bomb_bound_to_a_stem_cell_stops_at_the_plugins_pids_limit(make_supervisor):
    async with running(make_supervisor()) as supervisor:
        await ready_stem_cell(supervisor)
        worker, _, _, _ = await supervisor.allocate(hostile("fork_bomb", pids=40))
        with pytest.raises(grpc.aio.AioRpcError) as timed_out:
            await invoke(worker, "fork_bomb", {}, timeout_s=4)
        assert timed_out.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        output = worker.output.text()
        assert "fork bomb: pids limit 40" in output, output
        await supervisor.cancel(worker.worker_id, reason="timed out")


async def test_a_memory_hog_bound_to_a_stem_cell_is_oom_killed_at_the_plugins_limit(make_supervisor):
    async with running(make_supervisor()) as supervisor:
        await ready_stem_cell(supervisor)
        worker, _, _, _ = await supervisor.allocate(hostile("memory_hog"))
        with pytest.raises(grpc.aio.AioRpcError):
            await invoke(worker, "memory_hog", {}, timeout_s=30)
        cause = await supervisor.lifecycle.cause_if_exited(worker, wait_s=5)
        assert cause is not None and cause.kind == "memory_limit", cause
        assert "128 MB" in cause.detail
        await supervisor.release(worker.worker_id)


async def test_a_restarted_supervisor_reaps_its_stem_cell_containers(make_supervisor, docker_client):
    crashed = make_supervisor()
    await crashed.start()
    await ready_stem_cell(crashed)
    await crashed.stem_cells.close()
    restarted = make_supervisor(supervisor_id=crashed.supervisor_id, count=0)
    try:
        assert await restarted.start() == 1
        assert not containers_of(docker_client, crashed.supervisor_id)
    finally:
        await restarted.shutdown()
        await crashed.shutdown()


async def test_a_java_container_stem_cell_is_bound_to_add(make_supervisor, docker_client, java_image):
    if not java_image:
        pytest.skip(f"image {JAVA_IMAGE} is missing: `make images`")
    supervisor = make_supervisor(runtime="java")
    supervisor.stem_cells.plans = [StemCellPlan(backend="docker", count=1, memory_mb=(256,))]
    await supervisor.start()
    try:
        await ready_stem_cell(supervisor, timeout_s=120)
        add = PluginRef(name="add_numbers", runtime="java", entrypoint="add_numbers")
        worker, events, _, _ = await supervisor.allocate(add)
        assert "from stem cell" in next(e.detail for e in events if e.state == State.ALLOCATING)
        assert (await invoke(worker, "add_numbers", {"operand1": 2, "operand2": 40}))["result"] == 42.0
        await supervisor.release(worker.worker_id)
    finally:
        await supervisor.shutdown()

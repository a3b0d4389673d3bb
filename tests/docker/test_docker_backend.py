"""The supervisor with the docker backend, in-process, with real containers."""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path

import grpc
import pytest

from platform_core.rpc import ppp_grpc, ppp_pb2
from platform_core.supervisor.backends.docker import LABEL_PLUGIN, LABEL_WORKER, DockerBackend
from platform_core.supervisor.errors import WorkerFailedToStart
from platform_core.supervisor.model import PluginRef, State
from platform_core.supervisor.service import Supervisor
from tests.docker.conftest import PYTHON_IMAGE, SESSION_SUPERVISORS, containers_of, require_image, wait_until_gone

pytestmark = pytest.mark.docker

SUBTRACT = PluginRef(
    name="subtract_numbers", runtime="python", entrypoint="plugins.subtract_numbers:plugin", image=PYTHON_IMAGE
)
_ids = itertools.count(1)


@pytest.fixture
def make_supervisor(docker_client, socket_root):
    """Supervisors with the docker backend only, each with its own id; their containers are checked at the end."""
    require_image(docker_client, PYTHON_IMAGE)
    made: list[str] = []

    def make(supervisor_id: str | None = None) -> Supervisor:
        supervisor_id = supervisor_id or f"dt{os.getpid()}-{next(_ids)}"
        SESSION_SUPERVISORS.add(supervisor_id)
        made.append(supervisor_id)
        backend = DockerBackend(supervisor_id=supervisor_id, client=docker_client, socket_root=socket_root)
        return Supervisor(
            runtime="python", supervisor_id=supervisor_id, backends={"docker": backend}, default_backend="docker"
        )

    yield make
    left = wait_until_gone(docker_client, set(made))
    for container in left:
        docker_client.api.remove_container(container["Id"], force=True)
    assert not left, f"containers left behind: {[c['Names'] for c in left]}"


async def _health(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await ppp_grpc.PluginWorkerStub(channel).Health(ppp_pb2.HealthRequest(), timeout=5)
    return reply.status


async def test_allocate_and_release_a_container(make_supervisor, docker_client):
    supervisor = make_supervisor()
    worker, events, _warm, _ = await supervisor.allocate(SUBTRACT)

    assert [e.state for e in events] == [
        State.REQUESTED,
        State.ALLOCATING,
        State.SPAWNING,
        State.STARTING,
        State.READY,
        State.EXECUTING,
    ]
    assert "--network none" in events[2].detail and PYTHON_IMAGE in events[2].detail
    assert events[4].detail.startswith("Health SERVING after ")
    # The gateway connects to the socket on the host side of the bind mount.
    socket = Path(worker.address.removeprefix("unix://"))
    assert socket.is_socket() and socket.parent.stat().st_uid == 65534
    assert await _health(worker.address) == ppp_pb2.HealthResponse.SERVING
    (container,) = containers_of(docker_client, supervisor.supervisor_id)
    assert container["Labels"][LABEL_WORKER] == worker.worker_id
    assert container["Labels"][LABEL_PLUGIN] == "subtract_numbers"
    assert worker.pid > 0, "the container's main pid on the host"

    outcome = await supervisor.release(worker.worker_id)

    assert [e.state for e in outcome.events] == [State.COMPLETED, State.RELEASING, State.STOPPING, State.REMOVED]
    assert outcome.exit_code == 0, "SIGTERM handled: a clean exit, no SIGKILL"
    assert not containers_of(docker_client, supervisor.supervisor_id), "removed before release returns"
    assert not socket.parent.exists(), "the socket directory is removed"


async def test_missing_image_says_how_to_build_it(make_supervisor, socket_root):
    supervisor = make_supervisor()
    plugin = PluginRef(name="ghost", runtime="python", entrypoint="plugins.x:plugin", image="no-such-image:404")

    with pytest.raises(WorkerFailedToStart, match=r"no-such-image:404.*buildimages"):
        await supervisor.allocate(plugin)
    assert not supervisor.workers
    assert not any((socket_root / f"{supervisor.supervisor_id}.docker").iterdir())


async def test_a_worker_that_cannot_start_reports_its_output(make_supervisor, docker_client):
    supervisor = make_supervisor()
    plugin = PluginRef(name="broken", runtime="python", entrypoint="plugins.no_such_plugin:plugin", image=PYTHON_IMAGE)

    # The worker's stderr reaches the error through the container's log stream.
    with pytest.raises(WorkerFailedToStart, match=r"(?s)exited with code \d+ before it was ready: .*no_such_plugin"):
        await supervisor.allocate(plugin)
    assert not wait_until_gone(docker_client, supervisor.supervisor_id)


async def test_cancel_force_removes_the_container(make_supervisor, docker_client):
    supervisor = make_supervisor()
    worker, _events, _warm, _ = await supervisor.allocate(SUBTRACT)

    outcome = await supervisor.cancel(worker.worker_id, reason="test")

    assert outcome.events[-1].state == State.REMOVED
    assert outcome.exit_code == 137, "SIGKILL"
    assert not containers_of(docker_client, supervisor.supervisor_id)


async def test_an_allocation_cancelled_mid_launch_leaves_no_container(make_supervisor, docker_client):
    supervisor = make_supervisor()
    events = supervisor.watch()
    allocation = asyncio.create_task(supervisor.allocate(SUBTRACT))
    async for event in events:
        if event.state == State.SPAWNING:  # the container is being created right now
            break

    allocation.cancel()
    with pytest.raises(asyncio.CancelledError):
        await allocation

    assert not supervisor.workers
    assert not containers_of(docker_client, supervisor.supervisor_id)


async def test_a_worker_dying_on_its_own_is_noticed(make_supervisor, docker_client):
    supervisor = make_supervisor()
    events = supervisor.watch()
    worker, _events, _warm, _ = await supervisor.allocate(SUBTRACT)

    docker_client.api.kill(containers_of(docker_client, supervisor.supervisor_id)[0]["Id"])

    async def failed() -> str:
        async for event in events:
            if event.worker_id == worker.worker_id and event.state == State.FAILED:
                return event.detail
        raise AssertionError("watch ended")

    assert "exited unexpectedly with code 137" in await asyncio.wait_for(failed(), 10)
    outcome = await supervisor.release(worker.worker_id)
    assert outcome.events[-1].state == State.REMOVED


async def test_reap_orphans_removes_an_earlier_lifes_containers(make_supervisor, docker_client, socket_root):
    crashed = make_supervisor()
    for _ in range(2):
        await crashed.allocate(SUBTRACT)
    assert len(containers_of(docker_client, crashed.supervisor_id)) == 2

    # The same supervisor id starting again (after a SIGKILL, say) reaps what its earlier life left.
    restarted = make_supervisor(crashed.supervisor_id)
    assert await restarted.start() == 2

    assert not containers_of(docker_client, crashed.supervisor_id)
    assert not any((socket_root / f"{crashed.supervisor_id}.docker").iterdir())
    assert await restarted.start() == 0


NODE_IMAGE = "node-plugin-worker:latest"


async def test_a_node_worker_runs_in_its_runtimes_image(make_supervisor, docker_client):
    """The docker backend runs any runtime the same way: the recipe's image and container command."""
    from platform_core.runtimes import BUILTIN_RUNTIMES

    require_image(docker_client, NODE_IMAGE)
    supervisor = make_supervisor()
    supervisor.runtime = "node"
    plugin = PluginRef(
        name="count_primes", runtime="node", entrypoint="plugins/count_primes", runtime_spec=BUILTIN_RUNTIMES["node"]
    )
    worker, events, _warm, _ = await supervisor.allocate(plugin)
    spawn = next(e for e in events if e.state == State.SPAWNING).detail
    assert f"{NODE_IMAGE} plugins/count_primes --unix /sock/worker.sock --max-concurrency 1" in spawn
    async with grpc.aio.insecure_channel(worker.address) as channel:
        request = ppp_pb2.InvokeRequest(primitive="count_primes", arguments=b'{"limit": 1000}', request_id="r")
        messages = [m async for m in ppp_grpc.PluginWorkerStub(channel).Invoke(request, timeout=10)]
    assert messages[-1].completed.output.startswith(b'{"count":168,"largest":997')
    assert sum(m.HasField("progress") for m in messages) == 10

    outcome = await supervisor.release(worker.worker_id)

    assert outcome.exit_code == 0, "node handles SIGTERM as PID 1: a clean exit, no SIGKILL"


async def test_a_container_worker_is_reached_through_the_relay(make_supervisor):
    """A gateway on another host reaches a docker worker (--network none) through the relay."""
    from platform_core.gateway.worker_route import WorkerRoute, open_channel
    from platform_core.supervisor.ppp_relay import PppRelay, relay_target

    supervisor = make_supervisor()
    relay = PppRelay(supervisor.workers)
    port = await relay.start("127.0.0.1", 0)
    try:
        worker, *_ = await supervisor.allocate(SUBTRACT)
        route = WorkerRoute(worker.worker_id, relay_target(worker.worker_id), f"127.0.0.1:{port}", "")
        async with open_channel(route, tls=None) as channel:
            request = ppp_pb2.InvokeRequest(primitive="subtract_numbers", arguments=b'{"operand1": 7, "operand2": 2}')
            messages = [m async for m in ppp_grpc.PluginWorkerStub(channel).Invoke(request, timeout=10)]
        assert messages[-1].HasField("completed") and b"5" in messages[-1].completed.output
        await supervisor.release(worker.worker_id)
    finally:
        await relay.close()

"""Several supervisors per runtime: the capacity view's choices, and the runtime client's
spreading and failover against small in-process gRPC supervisors (no workers are started)."""

from __future__ import annotations

import asyncio
import itertools
import socket

import grpc
import pytest

from platform_core.gateway import errors, runtime_client
from platform_core.gateway.supervisor_choice import CapacityView
from platform_core.invocations.trace import Trace
from platform_core.registry.builtin import runtime_fields
from platform_core.registry.models import PluginSpec, Runtime
from platform_core.rpc import sup_grpc, sup_pb2
from platform_core.runtimes import BUILTIN_RUNTIMES
from platform_core.tenancy.callers import Caller

A, B, C = "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"  # names only: the view never connects


# --- the view ------------------------------------------------------------------------------


def test_most_free_slots_first_and_equals_take_turns():
    view = CapacityView()
    assert view.order([A, B], default_max_workers=4) == [A, B]
    assert view.order([A, B], default_max_workers=4) == [B, A]
    view.lease_started(A, default_max_workers=4)
    assert view.order([A, B], default_max_workers=4) == [B, A]
    assert view.order([A, B], default_max_workers=4) == [B, A]


def test_a_listing_replaces_the_guess_and_own_leases_count_on_top_of_it():
    view = CapacityView()
    view.order([A, B], default_max_workers=32)
    view.lease_started(A, default_max_workers=32)
    view.listed(A, max_workers=8, workers=5)  # the listing already includes that lease
    view.listed(B, max_workers=4, workers=0)
    assert view.load(A, default_max_workers=0).free == 3
    view.lease_started(A, default_max_workers=32)
    view.lease_ended(A)
    view.lease_ended(A)  # the listed one ends too: its worker is gone
    assert view.load(A, default_max_workers=0).free == 4
    # Equally free: they take turns at being first.
    assert {view.order([A, B], default_max_workers=32)[0] for _ in range(2)} == {A, B}
    view.lease_started(B, default_max_workers=32)
    assert view.order([A, B], default_max_workers=32) == [A, B]


def test_a_supervisor_marked_down_is_skipped_until_its_time_is_up_or_it_answers():
    view = CapacityView()
    view.order([A, B, C], default_max_workers=4, now=0)
    view.mark_down(B, reason="refused", down_s=5, now=100)
    assert B not in view.order([A, B, C], default_max_workers=4, now=101)
    assert B in view.order([A, B, C], default_max_workers=4, now=105)
    view.mark_down(B, reason="refused", down_s=5, now=200)
    view.listed(B, max_workers=4, workers=0, now=201)
    assert B in view.order([A, B, C], default_max_workers=4, now=201)


def test_when_every_supervisor_is_marked_down_all_are_tried_soonest_back_first():
    view = CapacityView()
    view.order([A, B], default_max_workers=4, now=0)
    view.mark_down(A, reason="x", down_s=5, now=10)
    view.mark_down(B, reason="x", down_s=5, now=9)
    assert view.order([A, B], default_max_workers=4, now=11) == [B, A]


def test_full_until_listed_again_and_listings_fall_due():
    view = CapacityView()
    view.order([A, B], default_max_workers=4, now=0)
    assert sorted(view.stale([A, B], interval_s=2, now=0)) == [A, B]
    assert view.stale([A, B], interval_s=2, now=0) == []  # already being listed
    view.listed(A, max_workers=4, workers=0, now=1)
    view.listing_failed(B)
    assert view.stale([A, B], interval_s=2, now=2) == [B]
    view.mark_full(A)
    assert view.load(A, default_max_workers=4).free == 0
    assert view.order([A, B], default_max_workers=4, now=2)[0] == B
    assert view.stale([A, B], interval_s=2, now=2) == [A]  # full: listed again at the next chance
    assert view.stale([A], interval_s=2, now=100) == []  # one supervisor: nothing to choose


# --- the runtime client against fake supervisors ------------------------------------------------


class FakeSupervisor(sup_grpc.RuntimeSupervisorServicer):
    """Allocates names, not workers; refuses beyond ``max_workers``."""

    def __init__(self, name: str, max_workers: int = 8) -> None:
        self.name, self.max_workers = name, max_workers
        self.workers: set[str] = set()
        self.released: list[str] = []
        self._ids = itertools.count(1)

    async def AllocateWorker(self, request, context):
        if len(self.workers) >= self.max_workers:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"all {self.max_workers} slots in use")
        worker_id = f"{self.name}-{next(self._ids)}"
        self.workers.add(worker_id)
        return sup_pb2.AllocateWorkerResponse(
            worker=sup_pb2.WorkerHandle(worker_id=worker_id, address="unix:///nowhere", runtime="python")
        )

    async def ReleaseWorker(self, request, context):
        self.workers.discard(request.worker_id)
        self.released.append(request.worker_id)
        return sup_pb2.ReleaseWorkerResponse()

    async def ListWorkers(self, request, context):
        return sup_pb2.ListWorkersResponse(
            supervisor_id=self.name,
            runtime="python",
            max_workers=self.max_workers,
            workers=[sup_pb2.WorkerInfo(worker_id=w) for w in sorted(self.workers)],
        )


def dead_address() -> str:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def view(monkeypatch):
    fresh = CapacityView()
    monkeypatch.setattr(runtime_client, "capacity_view", fresh)
    return fresh


@pytest.fixture
async def supervisors():
    servers, fakes = [], {}
    for name in ("one", "two"):
        server = grpc.aio.server()
        fake = FakeSupervisor(name)
        sup_grpc.add_RuntimeSupervisorServicer_to_server(fake, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        fakes[f"127.0.0.1:{port}"] = fake
    yield fakes
    for server in servers:
        await server.stop(None)


PLUGIN = PluginSpec(
    name="subtract_numbers",
    runtime=Runtime(name="python", **runtime_fields(BUILTIN_RUNTIMES["python"])),
    entrypoint="plugins.subtract_numbers:plugin",
)


def configure(settings, *addresses: str) -> None:
    settings.PLATFORM_SUPERVISORS = {"python": list(addresses)}


async def allocate(trace: Trace | None = None) -> runtime_client.WorkerLease:
    return await runtime_client.worker_allocate(
        plugin=PLUGIN, caller=Caller(request_id="r"), trace=trace or Trace("t", publish=False), timeout_s=5
    )


async def test_allocations_are_spread_over_the_supervisors_and_released_where_they_came_from(
    settings, view, supervisors
):
    configure(settings, *supervisors)
    leases = await asyncio.gather(*(allocate() for _ in range(10)))
    assert sorted(len(fake.workers) for fake in supervisors.values()) == [5, 5]
    for lease in leases:
        assert lease.worker_id in supervisors[lease.supervisor].workers
    trace = Trace("t", publish=False)
    await asyncio.gather(*(runtime_client.worker_release(lease=lease, reason="done", trace=trace) for lease in leases))
    for address, fake in supervisors.items():
        assert sorted(fake.released) == sorted(lease.worker_id for lease in leases if lease.supervisor == address)
    assert all(view.load(address, default_max_workers=32).leases == 0 for address in supervisors)


async def test_the_listing_steers_allocations_to_free_slots(settings, view, supervisors):
    busy, free = supervisors
    supervisors[busy].workers.update({"w1", "w2", "w3", "w4", "w5", "w6"})
    configure(settings, busy, free)
    await runtime_client.workers_list(scope=None)  # any listing feeds the view
    leases = [await allocate() for _ in range(4)]
    assert [lease.supervisor for lease in leases] == [free] * 4


async def test_a_supervisor_that_is_down_is_failed_over_within_the_request_and_then_skipped(
    settings, view, supervisors
):
    dead, (alive, fake) = dead_address(), next(iter(supervisors.items()))
    configure(settings, dead, alive)
    trace = Trace("t", publish=False)
    lease = await allocate(trace)  # equals take turns: the first try goes to the dead one
    kinds = [event.kind for event in trace.events]
    assert kinds.count("allocate_rpc") == 2 and "allocation_retry" in kinds and "allocation_failed" not in kinds
    assert lease.supervisor == alive and lease.worker_id in fake.workers
    assert view.load(dead, default_max_workers=0).down_reason
    trace = Trace("t", publish=False)
    for _ in range(3):
        assert (await allocate(trace)).supervisor == alive
    assert [event.kind for event in trace.events].count("allocate_rpc") == 3  # no more tries of the dead one
    [entry] = [e for e in await runtime_client.workers_list(scope=None) if e["address"] == dead]
    assert entry["up"] is False


async def test_when_all_are_full_the_answer_is_no_capacity(settings, view, supervisors):
    for fake in supervisors.values():
        fake.max_workers = 0
    configure(settings, *supervisors)
    trace = Trace("t", publish=False)
    with pytest.raises(errors.NoCapacity):
        await allocate(trace)
    assert [event.kind for event in trace.events] == [
        "allocate_request",
        "allocate_rpc",
        "allocation_retry",
        "allocate_rpc",
        "allocation_failed",
    ]


async def test_when_all_are_down_the_answer_is_unavailable(settings, view):
    configure(settings, dead_address(), dead_address())
    with pytest.raises(errors.SupervisorUnavailable, match="none of the 2 python runtime supervisors"):
        await allocate()


async def test_a_supervisor_started_a_moment_after_a_failed_try_is_reached(settings, view):
    """The channel to a supervisor that was down stays in TRANSIENT_FAILURE until its next
    connection attempt; an allocation waits for it (SUPERVISOR_CONNECT_S) rather than failing."""
    address = dead_address()
    configure(settings, address)
    with pytest.raises(errors.SupervisorUnavailable):
        await allocate()
    await asyncio.sleep(0.3)  # the channel's reconnection attempts back off meanwhile
    server = grpc.aio.server()
    fake = FakeSupervisor("late")
    sup_grpc.add_RuntimeSupervisorServicer_to_server(fake, server)
    assert server.add_insecure_port(address) != 0
    await server.start()
    try:
        view.listed(address, max_workers=8, workers=0)  # as the background listing would, once it answers
        lease = await allocate()
        assert lease.worker_id in fake.workers
    finally:
        await server.stop(None)


async def test_a_supervisor_that_stays_down_is_reported_within_the_connect_budget(settings, view):
    settings.PLATFORM_SUPERVISOR_CONNECT_S = 0.3
    configure(settings, dead_address())
    started = asyncio.get_running_loop().time()
    with pytest.raises(errors.SupervisorUnavailable):
        await allocate()
    assert asyncio.get_running_loop().time() - started < 3

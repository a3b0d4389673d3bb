"""The gateway's client of the runtime supervisors (gRPC ``RuntimeSupervisor``).

Channels are opened once per supervisor address and event loop and kept; calls fail fast
when a supervisor is down (no waiting for it to come back). With several supervisors for a
runtime, an allocation goes to the one with the most free slots (``supervisor_choice``) and
fails over to the others within the same request; with none left the API answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from dataclasses import dataclass
from typing import Any

import grpc
from django.conf import settings

from platform_core.gateway import errors, instance
from platform_core.gateway.supervisor_choice import capacity_view
from platform_core.gateway.supervisor_discovery import supervisors_configured
from platform_core.invocations.trace import Trace
from platform_core.invocations.vocabulary import EventKind as K
from platform_core.invocations.vocabulary import Phase
from platform_core.registry.models import PluginSpec
from platform_core.registry.refs import plugin_ref_message
from platform_core.rpc import FAST_CHANNEL_OPTIONS, sup_grpc, sup_pb2
from platform_core.rpc.secret import client_interceptors
from platform_core.tenancy.callers import Caller
from platform_core.tls import supervisor_channel


@dataclass(frozen=True)
class WorkerLease:
    """A worker (ephemeral) or one seat of a pooled worker, leased from ``supervisor``."""

    worker_id: str
    address: str
    runtime: str
    backend: str
    warm: bool
    supervisor: str
    lease_id: str = ""
    # Renew it at least this often (RenewLeases), or the supervisor takes it back.
    ttl_s: float = 15.0
    # Where the worker runs (WorkerHandle.host_id/host_name): decides direct socket or relay.
    host_id: str = ""
    host_name: str = ""
    relay_port: int = 0


@dataclass(frozen=True)
class ReleaseReport:
    output: str = ""
    output_truncated: bool = False
    exit_code: int = 0
    # The worker is gone (ephemeral, retired, or the supervisor could not be asked).
    removed: bool = True
    # Why the worker ended on its own, if it did (ExitCause: "memory_limit", ...; a sentence).
    exit_cause: str = ""
    exit_detail: str = ""
    # The supervisor did not answer (UNAVAILABLE): it went away, and its workers with it.
    supervisor_lost: bool = False


def _owner() -> sup_pb2.LeaseOwner:
    """This gateway process, as the holder of the workers it allocates (ReclaimLeases)."""
    return sup_pb2.LeaseOwner(instance_id=instance.INSTANCE_ID, started_at_unix_nanos=instance.STARTED_NS)


_stubs: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, tuple[grpc.aio.Channel, sup_grpc.RuntimeSupervisorStub]]
] = weakref.WeakKeyDictionary()


def _channel_stub(address: str) -> tuple[grpc.aio.Channel, sup_grpc.RuntimeSupervisorStub]:
    per_loop = _stubs.setdefault(asyncio.get_running_loop(), {})
    if (pair := per_loop.get(address)) is None:
        channel = supervisor_channel(
            address,
            options=FAST_CHANNEL_OPTIONS,
            interceptors=client_interceptors(settings.PLATFORM_SUPERVISOR_SECRET),
        )
        pair = per_loop[address] = (channel, sup_grpc.RuntimeSupervisorStub(channel))
    return pair


def _stub(address: str) -> sup_grpc.RuntimeSupervisorStub:
    return _channel_stub(address)[1]


async def _connected_stub(address: str, budget_s: float) -> sup_grpc.RuntimeSupervisorStub:
    """The supervisor's stub, once its channel is connected or ``budget_s`` has passed.

    A channel that once failed to connect (the supervisor was down, or not started yet) stays
    in TRANSIENT_FAILURE until its next attempt succeeds, and a call made meanwhile fails at
    once with UNAVAILABLE although the supervisor may be up by now. Waiting a moment for the
    channel (never for the call: an allocation may legitimately take seconds) tells the two apart.
    """
    channel, stub = _channel_stub(address)
    state = channel.get_state(try_to_connect=True)
    if state is grpc.ChannelConnectivity.READY or budget_s <= 0:
        return stub
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(budget_s):
            while state is not grpc.ChannelConnectivity.READY:
                await channel.wait_for_state_change(state)
                state = channel.get_state(try_to_connect=True)
    return stub


def supervisor_addresses(runtime: str) -> list[str]:
    return supervisors_configured().get(runtime, [])


def _record_events(trace: Trace, events: list[sup_pb2.WorkerEvent], phase: Phase) -> None:
    """The supervisor's lifecycle events of the worker, at the times it reported them."""
    for event in events:
        state = sup_pb2.WorkerState.Name(event.state).lower()
        trace.add(
            K.lifecycle(state), f"{event.worker_id} {state}: {event.detail}", phase=phase, at_ns=event.at_unix_nanos
        )
        if event.state == sup_pb2.STOPPING:
            trace.add(K.WORKER_SIGNAL, event.detail, phase=phase, at_ns=event.at_unix_nanos)


def _unavailable(runtime: str, address: str, exc: grpc.aio.AioRpcError) -> errors.SupervisorUnavailable:
    return errors.SupervisorUnavailable(
        f"the {runtime} runtime supervisor at {address} is not reachable ({exc.code().name.lower()}); "
        f"start it with `manage.py runsupervisor --runtime {runtime}`"
    )


async def worker_allocate(
    *, plugin: PluginSpec, caller: Caller, trace: Trace, timeout_s: float, traceparent: str | None = None
) -> WorkerLease:
    """A ready worker from a supervisor of the plugin's runtime: the one with the most free slots,
    else the next one, within one deadline. A supervisor that is down or full is skipped.
    ``traceparent``: the span the supervisor's spans join (default: the allocation's, in ``trace``)."""
    addresses = supervisor_addresses(plugin.runtime_id)
    opened = trace.add(K.ALLOCATE_REQUEST, f"allocateWorker({plugin.name}, context)")
    if not addresses:
        trace.add(
            K.ALLOCATION_FAILED,
            f"no {plugin.runtime_id} supervisor configured",
            source=K.ALLOCATE_REQUEST.target,
            target=K.ALLOCATE_REQUEST.source,
        )
        raise errors.SupervisorUnavailable(
            f"no supervisor is configured for runtime {plugin.runtime_id!r} (set SUPERVISORS)"
        )
    request = sup_pb2.AllocateWorkerRequest(
        plugin=plugin_ref_message(plugin),
        context=sup_pb2.Context(
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
            session_id=caller.session_id,
            request_id=caller.request_id,
            traceparent=trace.traceparent(opened) if traceparent is None else traceparent,
            tracestate=trace.tracestate if traceparent is None else caller.tracestate,
        ),
        timeout_ms=int(timeout_s * 1000),
        owner=_owner(),
        tenant_id=caller.tenant_id,
    )
    default_max = settings.PLATFORM_SUPERVISOR_MAX_WORKERS
    candidates = capacity_view.order(addresses, default_max_workers=default_max)
    _refresh_capacity(addresses)
    # A little longer than the supervisor's own readiness deadline, so that it answers first.
    deadline = time.monotonic() + timeout_s + 2.0
    failures: list[errors.GatewayError] = []
    for address in candidates:
        trace.add(K.ALLOCATE_RPC, f"gRPC AllocateWorkerRequest → {address}")
        capacity_view.lease_started(address, default_max_workers=default_max)
        try:
            # Another supervisor to try: do not wait for this one to come up; the last: a moment.
            budget_s = settings.PLATFORM_SUPERVISOR_CONNECT_S if address == candidates[-1] else 0.0
            stub = await _connected_stub(address, budget_s)
            response = await stub.AllocateWorker(request, timeout=max(deadline - time.monotonic(), 0.1))
        except grpc.aio.AioRpcError as exc:
            capacity_view.lease_ended(address)
            code, error = exc.code(), allocation_error(plugin.runtime_id, address, exc)
            failures.append(error)
            if code == grpc.StatusCode.UNAVAILABLE:
                capacity_view.mark_down(address, reason=error.message, down_s=settings.PLATFORM_SUPERVISOR_DOWN_S)
            elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                capacity_view.mark_full(address)
            if address == candidates[-1] or code not in _TRY_NEXT or time.monotonic() >= deadline:
                trace.add(K.ALLOCATION_FAILED, f"{code.name}: {exc.details()}")
                raise _final_error(plugin.runtime_id, failures) from exc
            trace.add(
                K.ALLOCATION_RETRY,
                f"{code.name} from {address}: {exc.details()}; trying the next {plugin.runtime_id} supervisor",
            )
            continue
        except BaseException:  # cancelled with the request: no lease was taken
            capacity_view.lease_ended(address)
            raise
        _record_events(trace, list(response.events), Phase.ALLOCATION)
        handle = response.worker
        trace.add(
            K.ALLOCATE_RESPONSE,
            f"WorkerHandle({handle.worker_id}, {handle.runtime}, {'warm' if handle.warm else 'cold'})",
        )
        trace.add(K.WORKER_ALLOCATED, handle.worker_id)
        lease = response.lease
        return WorkerLease(
            handle.worker_id,
            handle.address,
            handle.runtime,
            handle.backend,
            handle.warm,
            address,
            lease.lease_id,
            (lease.ttl_ms or 15_000) / 1000,
            handle.host_id,
            handle.host_name,
            handle.relay_port,
        )
    raise AssertionError("unreachable: the last candidate raises")


# Failures that another supervisor of the runtime may not have; the rest (a worker that cannot
# start, a deadline spent) would be the same anywhere, or leave no time to try.
_TRY_NEXT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}


def _final_error(runtime: str, failures: list[errors.GatewayError]) -> errors.GatewayError:
    """What the caller is told when no supervisor could allocate: "full" wins over "down"
    (both 503), since capacity is what is short when at least one supervisor answered."""
    if len(failures) > 1 and all(isinstance(f, errors.SupervisorUnavailable) for f in failures):
        return errors.SupervisorUnavailable(
            f"none of the {len(failures)} {runtime} runtime supervisors is reachable: "
            + "; ".join(f.message for f in failures)
        )
    return next((f for f in failures if isinstance(f, errors.NoCapacity)), failures[-1])


# Background ListWorkers calls keeping the capacity view fresh (the loop holds tasks weakly).
_refreshing: set[asyncio.Task[None]] = set()


def _refresh_capacity(addresses: list[str]) -> None:
    """Start a ListWorkers for each supervisor whose listing is stale; never waits for it."""
    for address in capacity_view.stale(addresses, interval_s=settings.PLATFORM_SUPERVISOR_LIST_INTERVAL_S):
        task = asyncio.get_running_loop().create_task(_list_capacity(address))
        _refreshing.add(task)
        task.add_done_callback(_refreshing.discard)


async def _list_capacity(address: str) -> None:
    try:
        reply = await _stub(address).ListWorkers(
            sup_pb2.ListWorkersRequest(), timeout=settings.PLATFORM_SUPERVISOR_CALL_TIMEOUT_S
        )
    except grpc.aio.AioRpcError as exc:
        capacity_view.listing_failed(address)
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            capacity_view.mark_down(address, reason=exc.details() or "", down_s=settings.PLATFORM_SUPERVISOR_DOWN_S)
        return
    except BaseException:
        capacity_view.listing_failed(address)
        raise
    capacity_view.listed(address, max_workers=reply.max_workers, workers=_slots_used(reply))


def allocation_error(runtime: str, address: str, exc: grpc.aio.AioRpcError) -> errors.GatewayError:
    """The client's error for a supervisor's refusal of AllocateWorker (its gRPC status)."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return errors.NoCapacity(f"no free worker: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.AllocationTimeout(f"no worker was ready in time: {details}")
    if code in {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT}:
        return errors.WorkerStartFailed(f"worker could not be started: {details}")
    if code == grpc.StatusCode.UNAVAILABLE:
        return _unavailable(runtime, address, exc)
    return errors.GatewayError(f"supervisor error {code.name}: {details}")


async def worker_release(
    *, lease: WorkerLease, reason: str, trace: Trace | None, force: bool = False, retire: bool = False, uses: int = 1
) -> ReleaseReport:
    """Give the worker back (``retire``: never reuse it; ``force``: CancelAllocation, kill it;
    ``uses``: invocations served on the lease not reported yet; ``trace``: None for a lease given
    back between invocations). Never raises."""
    trace = trace if trace is not None else Trace("", publish=False)
    kind, call = ("cancel", "CancelAllocation") if force else ("release", "ReleaseWorker")
    opened = trace.add(K(f"{kind}_request"), f"{kind}Worker({lease.worker_id}, {reason!r})")
    trace.add(K(f"{kind}_rpc"), f"gRPC {call}Request")
    # The supervisor that allocated the worker is the only one that knows it.
    stub = _stub(lease.supervisor)
    timeout = settings.PLATFORM_SUPERVISOR_CALL_TIMEOUT_S + settings.PLATFORM_WORKER_STOP_GRACE_S
    try:
        if force:
            response = await stub.CancelAllocation(
                sup_pb2.CancelAllocationRequest(
                    worker_id=lease.worker_id,
                    reason=reason,
                    owner=_owner(),
                    lease_id=lease.lease_id,
                    traceparent=trace.traceparent(opened),
                ),
                timeout=timeout,
            )
        else:
            response = await stub.ReleaseWorker(
                sup_pb2.ReleaseWorkerRequest(
                    worker_id=lease.worker_id,
                    reason=reason,
                    retire=retire,
                    owner=_owner(),
                    lease_id=lease.lease_id,
                    uses=uses,
                    traceparent=trace.traceparent(opened),
                ),
                timeout=timeout,
            )
    except grpc.aio.AioRpcError as exc:
        trace.add(K.RELEASE_FAILED, f"{exc.code().name}: {exc.details()}")
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            capacity_view.mark_down(
                lease.supervisor, reason=exc.details() or "", down_s=settings.PLATFORM_SUPERVISOR_DOWN_S
            )
        return ReleaseReport(supervisor_lost=exc.code() == grpc.StatusCode.UNAVAILABLE)
    finally:
        capacity_view.lease_ended(lease.supervisor)
    _record_events(trace, list(response.events), Phase.CLEANUP)
    trace.add(K(f"{kind}_response"), f"{call}Response(exit code {response.exit_code})")
    trace.add(K.CANCELLED if force else K.RELEASED, "Success")
    removed = any(event.state == sup_pb2.REMOVED for event in response.events)
    cause = response.exit_cause
    return ReleaseReport(
        response.output, response.output_truncated, response.exit_code, removed, cause.kind, cause.detail
    )


@dataclass(frozen=True)
class Renewal:
    revoked: dict[str, str]
    unknown: list[str]


async def leases_renew(*, address: str, usages: list[sup_pb2.LeaseUsage]) -> Renewal | None:
    """Renew this gateway's leases at one supervisor; None when it did not answer."""
    try:
        reply = await _stub(address).RenewLeases(
            sup_pb2.RenewLeasesRequest(owner=_owner(), leases=usages),
            timeout=settings.PLATFORM_SUPERVISOR_CALL_TIMEOUT_S,
        )
    except grpc.aio.AioRpcError:
        return None
    return Renewal(dict(reply.revoked), list(reply.unknown))


async def leases_reclaim(*, instance_id: str, started_before_ns: int, reason: str) -> dict[str, list[str] | str]:
    """Ask every configured supervisor to take back the workers that earlier lives of gateway
    ``instance_id`` still hold; per supervisor address, the reclaimed worker ids or why not."""

    async def ask(address: str) -> list[str] | str:
        try:
            reply = await _stub(address).ReclaimLeases(
                sup_pb2.ReclaimLeasesRequest(
                    instance_id=instance_id, started_before_unix_nanos=started_before_ns, reason=reason
                ),
                timeout=settings.PLATFORM_SUPERVISOR_CALL_TIMEOUT_S + settings.PLATFORM_WORKER_STOP_GRACE_S,
            )
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        return list(reply.worker_ids)

    addresses = [address for addresses in supervisors_configured().values() for address in addresses]
    return dict(zip(addresses, await asyncio.gather(*(ask(a) for a in addresses)), strict=True))


def _slots_used(reply: sup_pb2.ListWorkersResponse) -> int:
    """Worker slots in use: stem cells waiting for a plugin hold none."""
    return sum(1 for w in reply.workers if w.state != sup_pb2.STEM_CELL)


def _isolation(reply: sup_pb2.ListWorkersResponse) -> dict[str, Any] | None:
    """How the supervisor's process backend isolates workers (None: it did not say)."""
    if not reply.HasField("isolation"):
        return None
    isolation = reply.isolation
    return {"mode": isolation.mode, "sandboxed": isolation.sandboxed, "detail": isolation.detail}


async def workers_list(*, scope: str | None) -> list[dict[str, Any]]:
    """Every configured supervisor with its workers, or why it could not be asked.

    ``scope``: the tenant whose workers the caller may see (workers started for it; pooled
    workers serve every tenant and belong to none); None: all of them (staff).
    """

    async def ask(runtime: str, address: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"runtime": runtime, "address": address}
        try:
            reply = await _stub(address).ListWorkers(
                sup_pb2.ListWorkersRequest(), timeout=settings.PLATFORM_SUPERVISOR_CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                capacity_view.mark_down(address, reason=exc.details() or "", down_s=settings.PLATFORM_SUPERVISOR_DOWN_S)
            return {**entry, "up": False, "error": f"{exc.code().name}: {exc.details()}", "workers": []}
        capacity_view.listed(address, max_workers=reply.max_workers, workers=_slots_used(reply))
        return {
            **entry,
            "up": True,
            "supervisor_id": reply.supervisor_id,
            "max_workers": reply.max_workers,
            "isolation": _isolation(reply),
            "host_id": reply.host_id,
            "host_name": reply.host_name,
            "stem_cells": [
                {"backend": kind.backend, "memory_mb": kind.memory_mb, "count": kind.count} for kind in reply.stem_cells
            ],
            "workers": [
                {
                    "worker_id": w.worker_id,
                    "plugin": w.plugin,
                    "state": sup_pb2.WorkerState.Name(w.state).lower(),
                    "backend": w.backend,
                    "pid": w.pid,
                    "started_at_unix_nanos": w.started_at_unix_nanos,
                    "tenant_id": w.tenant_id,
                    "pooled": w.pooled,
                    "in_use": w.in_use,
                    "uses": w.uses,
                    "leases": w.leases,
                    "busy": w.busy,
                }
                for w in reply.workers
                if scope is None or (scope and w.tenant_id == scope)  # "": no tenant, no worker
            ],
        }

    pairs = [(runtime, address) for runtime, addresses in supervisors_configured().items() for address in addresses]
    return list(await asyncio.gather(*(ask(runtime, address) for runtime, address in pairs)))


def workers_by_host(supervisors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``workers_list()`` grouped by the host each supervisor runs its workers on (supervisors
    that did not answer have no known host and are grouped under an empty id)."""
    hosts: dict[str, dict[str, Any]] = {}
    for entry in supervisors:
        host_id = entry.get("host_id", "")
        host = hosts.setdefault(
            host_id, {"host_id": host_id, "host_name": entry.get("host_name", ""), "supervisors": [], "workers": 0}
        )
        host["supervisors"].append(entry["address"])
        host["workers"] += len(entry["workers"])
    return list(hosts.values())

"""gRPC adapter of the supervisor: messages in, keyword arguments to ``Supervisor``, messages out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, NoReturn, TypeVar, cast

import grpc

from platform_core.observability.supervisor_calls import allocation_end, disposal_end
from platform_core.rpc import sup_grpc, sup_pb2
from platform_core.rpc.host_identity import LocalHost, local_host
from platform_core.runtimes import RuntimeSpec
from platform_core.supervisor import errors, service
from platform_core.supervisor.lifecycle import Disposal
from platform_core.supervisor.model import Event, ExitCause, LeaseOwner, Limits, PluginRef, PoolSpec, Worker

_STATUS = {
    errors.CapacityExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.UnknownWorker: grpc.StatusCode.NOT_FOUND,
    errors.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.WorkerNotReady: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.WorkerFailedToStart: grpc.StatusCode.FAILED_PRECONDITION,
}


def _pool(message: sup_pb2.PluginRef) -> PoolSpec | None:
    if not message.HasField("pool"):
        return None
    pool = message.pool
    return PoolSpec(
        min_idle=pool.min_idle,
        max_workers=max(pool.max_workers, 1),
        max_concurrency=max(pool.max_concurrency, 1),
        idle_timeout_s=pool.idle_timeout_ms / 1000,
        max_uses=pool.max_uses,
        queue_timeout_s=pool.queue_timeout_ms / 1000,
    )


def runtime_spec(message: sup_pb2.PluginRef) -> RuntimeSpec | None:
    if not message.HasField("runtime_spec"):
        return None
    spec = message.runtime_spec
    return RuntimeSpec.create(
        spec.name or message.runtime,
        spec.command,
        workdir=spec.workdir,
        env=dict(spec.env),
        image=spec.image,
        container_command=spec.container_command,
        limit_address_space=not spec.no_address_space_limit,
        zygote_command=spec.zygote_command,
        zygote_args=spec.zygote_args,
    )


def plugin_ref(message: sup_pb2.PluginRef) -> PluginRef:
    """The supervisor's view of a PluginRef message."""
    limits = message.limits
    defaults = Limits()
    return PluginRef(
        pool=_pool(message),
        runtime_spec=runtime_spec(message),
        name=message.name,
        runtime=message.runtime,
        entrypoint=message.entrypoint,
        image=message.image,
        backend=message.backend,
        limits=Limits(
            memory_bytes=limits.memory_bytes or defaults.memory_bytes,
            cpus=limits.cpus or defaults.cpus,
            pids=limits.pids or defaults.pids,
            cpu_seconds=limits.cpu_seconds,
        ),
    )


def lease_owner(request: Any) -> LeaseOwner | None:
    """The ``owner`` of a request, if it names one."""
    if not request.HasField("owner") or not request.owner.instance_id:
        return None
    return (request.owner.instance_id, request.owner.started_at_unix_nanos)


# The responses that carry a disposal (events, output, exit code and cause).
_Disposed = TypeVar("_Disposed", sup_pb2.ReleaseWorkerResponse, sup_pb2.CancelAllocationResponse)


def _cause(cause: ExitCause | None) -> sup_pb2.ExitCause | None:
    return None if cause is None else sup_pb2.ExitCause(kind=cause.kind, detail=cause.detail)


def event_message(event: Event, supervisor: service.Supervisor) -> sup_pb2.WorkerEvent:
    return sup_pb2.WorkerEvent(
        worker_id=event.worker_id,
        state=cast(sup_pb2.WorkerState, int(event.state)),
        at_unix_nanos=event.at_ns,
        detail=event.detail,
        plugin=event.plugin,
        runtime=supervisor.runtime,
        backend=event.backend,
        supervisor_id=supervisor.supervisor_id,
        tenant_id=event.tenant,
    )


def _handle(worker: Worker, host: LocalHost, relay_port: int, warm: bool = False) -> sup_pb2.WorkerHandle:
    return sup_pb2.WorkerHandle(
        worker_id=worker.worker_id,
        address=worker.address,
        runtime=worker.plugin.runtime,
        backend=worker.backend,
        warm=warm,
        host_id=host.id,
        host_name=host.name,
        relay_port=relay_port,
    )


class RuntimeSupervisorServicer(sup_grpc.RuntimeSupervisorServicer):
    def __init__(self, supervisor: service.Supervisor, host: LocalHost, relay_port: int) -> None:
        self.supervisor = supervisor
        self.host = host
        self.relay_port = relay_port

    def _events(self, events: Iterable[Event]) -> list[sup_pb2.WorkerEvent]:
        return [event_message(event, self.supervisor) for event in events]

    async def _abort(self, context: grpc.aio.ServicerContext[Any, Any], exc: errors.SupervisorError) -> NoReturn:
        await context.abort(_STATUS.get(type(exc), grpc.StatusCode.INTERNAL), str(exc))
        raise AssertionError("abort raises")

    async def AllocateWorker(
        self, request: sup_pb2.AllocateWorkerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sup_pb2.AllocateWorkerResponse:
        started_ns = time.time_ns()
        try:
            allocation = await self.supervisor.allocate(
                plugin_ref(request.plugin),
                timeout_s=request.timeout_ms / 1000 if request.timeout_ms else None,
                owner=lease_owner(request),
                tenant=request.tenant_id,
            )
        except errors.SupervisorError as exc:
            allocation_end(request=request, started_ns=started_ns, supervisor=self.supervisor, error=exc)
            await self._abort(context, exc)
        allocation_end(request=request, started_ns=started_ns, supervisor=self.supervisor, allocation=allocation)
        return sup_pb2.AllocateWorkerResponse(
            worker=_handle(allocation.worker, self.host, self.relay_port, allocation.warm),
            events=self._events(allocation.events),
            lease=sup_pb2.Lease(lease_id=allocation.lease.lease_id, ttl_ms=int(self.supervisor.leases.ttl_s * 1000)),
        )

    def _disposal(self, response: type[_Disposed], disposal: Disposal) -> _Disposed:
        return response(
            events=self._events(disposal.events),
            output=disposal.output,
            output_truncated=disposal.output_truncated,
            exit_code=disposal.exit_code,
            exit_cause=_cause(disposal.exit_cause),
        )

    async def ReleaseWorker(
        self, request: sup_pb2.ReleaseWorkerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sup_pb2.ReleaseWorkerResponse:
        started_ns = time.time_ns()
        try:
            disposal = await self.supervisor.release(
                request.worker_id,
                reason=request.reason,
                retire=request.retire,
                owner=lease_owner(request),
                lease_id=request.lease_id,
                uses=request.uses if request.HasField("uses") else None,
            )
        except errors.SupervisorError as exc:
            disposal_end(
                call="ReleaseWorker", request=request, started_ns=started_ns, supervisor=self.supervisor, error=exc
            )
            await self._abort(context, exc)
        disposal_end(
            call="ReleaseWorker", request=request, started_ns=started_ns, supervisor=self.supervisor, disposal=disposal
        )
        return self._disposal(sup_pb2.ReleaseWorkerResponse, disposal)

    async def CancelAllocation(
        self, request: sup_pb2.CancelAllocationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sup_pb2.CancelAllocationResponse:
        started_ns = time.time_ns()
        try:
            disposal = await self.supervisor.cancel(
                request.worker_id, reason=request.reason, owner=lease_owner(request), lease_id=request.lease_id
            )
        except errors.SupervisorError as exc:
            disposal_end(
                call="CancelAllocation", request=request, started_ns=started_ns, supervisor=self.supervisor, error=exc
            )
            await self._abort(context, exc)
        disposal_end(
            call="CancelAllocation",
            request=request,
            started_ns=started_ns,
            supervisor=self.supervisor,
            disposal=disposal,
        )
        return self._disposal(sup_pb2.CancelAllocationResponse, disposal)

    async def RenewLeases(
        self, request: sup_pb2.RenewLeasesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sup_pb2.RenewLeasesResponse:
        renewal = self.supervisor.renew(
            lease_owner(request),
            [service.Usage(usage.lease_id, usage.busy, usage.uses) for usage in request.leases],
        )
        return sup_pb2.RenewLeasesResponse(revoked=renewal.revoked, unknown=renewal.unknown)

    async def ReclaimLeases(
        self, request: sup_pb2.ReclaimLeasesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sup_pb2.ReclaimLeasesResponse:
        worker_ids, events = await self.supervisor.reclaim(
            request.instance_id, started_before_ns=request.started_before_unix_nanos, reason=request.reason
        )
        return sup_pb2.ReclaimLeasesResponse(worker_ids=worker_ids, events=self._events(events))

    async def ListWorkers(
        self, request: sup_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sup_pb2.ListWorkersResponse:
        supervisor = self.supervisor
        isolation = getattr(supervisor.backends.get("process"), "isolation", None)
        return sup_pb2.ListWorkersResponse(
            supervisor_id=supervisor.supervisor_id,
            runtime=supervisor.runtime,
            max_workers=supervisor.max_workers,
            isolation=None
            if isolation is None
            else sup_pb2.Isolation(mode=isolation.mode, sandboxed=isolation.sandboxed, detail=isolation.detail),
            host_id=self.host.id,
            host_name=self.host.name,
            stem_cells=[
                sup_pb2.StemCellKind(backend=backend, memory_mb=memory_mb, count=count)
                for backend, memory_mb, count in supervisor.stem_cells.kinds()
            ],
            workers=[
                sup_pb2.WorkerInfo(
                    worker_id=w.worker_id,
                    plugin=w.plugin.name,
                    state=cast(sup_pb2.WorkerState, int(w.state)),
                    backend=w.backend,
                    address=w.address,
                    started_at_unix_nanos=w.started_ns,
                    pid=w.pid,
                    runtime=w.plugin.runtime,
                    pooled=w.pooled,
                    in_use=w.in_use,
                    uses=w.uses,
                    tenant_id=w.tenant,
                    leases=len(w.leases),
                    busy=sum(1 for lease in w.leases.values() if lease.busy),
                )
                for w in supervisor.workers.values()
            ],
        )

    async def WatchWorkers(
        self, request: sup_pb2.WatchWorkersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[sup_pb2.WorkerEvent]:
        async for event in self.supervisor.watch():
            yield event_message(event, self.supervisor)


def add_to_server(
    server: grpc.aio.Server, supervisor: service.Supervisor, host: LocalHost | None = None, relay_port: int = 0
) -> None:
    """The supervisor API; handles name ``relay_port``, where the PPP relay to the workers listens."""
    servicer = RuntimeSupervisorServicer(supervisor, host or local_host(), relay_port)
    sup_grpc.add_RuntimeSupervisorServicer_to_server(servicer, server)

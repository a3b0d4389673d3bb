"""gRPC adapter of the supervisor: messages in, keyword arguments to ``Supervisor``, messages out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import grpc

from platform_core.rpc import sup_grpc, sup_pb2
from platform_core.rpc.host_identity import LocalHost, local_host
from platform_core.supervisor import service
from platform_core.supervisor.model import Event, ExitCause, LeaseOwner, Limits, PluginRef, PoolSpec, Worker

_STATUS = {
    service.CapacityExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    service.UnknownWorker: grpc.StatusCode.NOT_FOUND,
    service.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    service.WorkerNotReady: grpc.StatusCode.DEADLINE_EXCEEDED,
    service.WorkerFailedToStart: grpc.StatusCode.FAILED_PRECONDITION,
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


def plugin_ref(message: sup_pb2.PluginRef) -> PluginRef:
    """The supervisor's view of a PluginRef message."""
    limits = message.limits
    defaults = Limits()
    return PluginRef(
        pool=_pool(message),
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


def lease_owner(request) -> LeaseOwner | None:
    """The ``owner`` of a request, if it names one."""
    if not request.HasField("owner") or not request.owner.instance_id:
        return None
    return (request.owner.instance_id, request.owner.started_at_unix_nanos)


def _cause(cause: ExitCause | None) -> sup_pb2.ExitCause | None:
    return None if cause is None else sup_pb2.ExitCause(kind=cause.kind, detail=cause.detail)


def event_message(event: Event, supervisor: service.Supervisor) -> sup_pb2.WorkerEvent:
    return sup_pb2.WorkerEvent(
        worker_id=event.worker_id,
        state=int(event.state),
        at_unix_nanos=event.at_ns,
        detail=event.detail,
        plugin=event.plugin,
        runtime=supervisor.runtime,
        backend=event.backend,
        supervisor_id=supervisor.supervisor_id,
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

    async def _abort(self, context: grpc.aio.ServicerContext, exc: service.SupervisorError) -> None:
        await context.abort(_STATUS.get(type(exc), grpc.StatusCode.INTERNAL), str(exc))

    async def AllocateWorker(self, request, context):
        try:
            worker, events, warm = await self.supervisor.allocate(
                plugin_ref(request.plugin),
                timeout_s=request.timeout_ms / 1000 if request.timeout_ms else None,
                owner=lease_owner(request),
            )
        except service.SupervisorError as exc:
            await self._abort(context, exc)
        return sup_pb2.AllocateWorkerResponse(
            worker=_handle(worker, self.host, self.relay_port, warm), events=self._events(events)
        )

    async def ReleaseWorker(self, request, context):
        try:
            outcome = await self.supervisor.release(
                request.worker_id, reason=request.reason, retire=request.retire, owner=lease_owner(request)
            )
        except service.SupervisorError as exc:
            await self._abort(context, exc)
        return sup_pb2.ReleaseWorkerResponse(
            events=self._events(outcome.events),
            output=outcome.output,
            output_truncated=outcome.output_truncated,
            exit_code=outcome.exit_code,
            exit_cause=_cause(outcome.exit_cause),
        )

    async def CancelAllocation(self, request, context):
        try:
            outcome = await self.supervisor.cancel(request.worker_id, reason=request.reason, owner=lease_owner(request))
        except service.SupervisorError as exc:
            await self._abort(context, exc)
        return sup_pb2.CancelAllocationResponse(
            events=self._events(outcome.events),
            output=outcome.output,
            output_truncated=outcome.output_truncated,
            exit_code=outcome.exit_code,
            exit_cause=_cause(outcome.exit_cause),
        )

    async def ReclaimLeases(self, request, context):
        worker_ids, events = await self.supervisor.reclaim(
            request.instance_id, started_before_ns=request.started_before_unix_nanos, reason=request.reason
        )
        return sup_pb2.ReclaimLeasesResponse(worker_ids=worker_ids, events=self._events(events))

    async def ListWorkers(self, request, context):
        supervisor = self.supervisor
        return sup_pb2.ListWorkersResponse(
            supervisor_id=supervisor.supervisor_id,
            runtime=supervisor.runtime,
            max_workers=supervisor.max_workers,
            host_id=self.host.id,
            host_name=self.host.name,
            workers=[
                sup_pb2.WorkerInfo(
                    worker_id=w.worker_id,
                    plugin=w.plugin.name,
                    state=int(w.state),
                    backend=w.backend,
                    address=w.address,
                    started_at_unix_nanos=w.started_ns,
                    pid=w.pid,
                    runtime=w.plugin.runtime,
                    pooled=w.pooled,
                    in_use=w.in_use,
                    uses=w.uses,
                )
                for w in supervisor.workers.values()
            ],
        )

    async def WatchWorkers(self, request, context) -> AsyncIterator[sup_pb2.WorkerEvent]:
        async for event in self.supervisor.watch():
            yield event_message(event, self.supervisor)


def add_to_server(
    server: grpc.aio.Server, supervisor: service.Supervisor, host: LocalHost | None = None, relay_port: int = 0
) -> None:
    """The supervisor API; handles name ``relay_port``, where the PPP relay to the workers listens."""
    servicer = RuntimeSupervisorServicer(supervisor, host or local_host(), relay_port)
    sup_grpc.add_RuntimeSupervisorServicer_to_server(servicer, server)

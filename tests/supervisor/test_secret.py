"""The supervisor API's shared secret: checked on every call, sent by the gateway's client."""

from __future__ import annotations

import grpc
import pytest

from platform_core.rpc import sup_grpc, sup_pb2
from platform_core.rpc.secret import SecretCheck, client_interceptors
from platform_core.supervisor import grpc_service
from tests.supervisor.conftest import make_supervisor


async def test_calls_without_the_secret_are_refused(socket_root):
    supervisor = make_supervisor(socket_root)
    server = grpc.aio.server(interceptors=[SecretCheck("s3cret")])
    grpc_service.add_to_server(server, supervisor)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as bare:
            stub = sup_grpc.RuntimeSupervisorStub(bare)
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await stub.ListWorkers(sup_pb2.ListWorkersRequest())
            assert unary.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as stream:
                async for _ in stub.WatchWorkers(sup_pb2.WatchWorkersRequest()):
                    pass
            assert stream.value.code() == grpc.StatusCode.UNAUTHENTICATED
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=client_interceptors("wrong")) as wrong:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await sup_grpc.RuntimeSupervisorStub(wrong).ListWorkers(sup_pb2.ListWorkersRequest())
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=client_interceptors("s3cret")) as ok:
            reply = await sup_grpc.RuntimeSupervisorStub(ok).ListWorkers(sup_pb2.ListWorkersRequest())
            assert reply.supervisor_id == "python-test"
    finally:
        await supervisor.shutdown()
        await server.stop(None)

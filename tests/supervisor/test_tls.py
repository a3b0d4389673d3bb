"""Mutual TLS between gateways and supervisors: real TLS handshakes on loopback."""

from __future__ import annotations

import logging
from dataclasses import astuple

import grpc
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from platform_core.certs import make_ca, make_leaf, write_dev_certs
from platform_core.gateway.worker_route import WorkerRoute, open_channel
from platform_core.rpc import ppp_grpc, ppp_pb2, sup_grpc, sup_pb2
from platform_core.rpc.host_identity import LocalHost
from platform_core.supervisor import grpc_service
from platform_core.supervisor.ppp_relay import PppRelay, relay_target, server_ssl_context
from platform_core.tls import TlsMaterial, secure_channel, server_credentials, tls_from_env
from tests.supervisor.conftest import make_supervisor
from tests.supervisor.test_ppp_relay import SUBTRACT

CA = make_ca()
SUPERVISOR = make_leaf(CA, "supervisor", ["127.0.0.1"], server=True)
GATEWAY = make_leaf(CA, "gateway", ["gateway"], server=False)
STRANGER_CA = make_ca("someone else's CA")


def material(pair, ca=CA) -> TlsMaterial:
    return TlsMaterial(pair.cert_pem(), pair.key_pem(), ca.cert_pem())


@pytest.fixture
async def tls_supervisor(socket_root):
    """A supervisor's API and relay over mutual TLS: (supervisor, API address, relay port)."""
    supervisor = make_supervisor(socket_root)
    relay = PppRelay(supervisor.workers, ssl_context=server_ssl_context(*astuple(material(SUPERVISOR))[:3]))
    relay_port = await relay.start("127.0.0.1", 0)
    server = grpc.aio.server()
    grpc_service.add_to_server(server, supervisor, LocalHost(socket_root=str(socket_root)), relay_port)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(material(SUPERVISOR)))
    await server.start()
    try:
        yield supervisor, f"127.0.0.1:{port}", relay_port
    finally:
        await supervisor.shutdown()
        await server.stop(None)
        await relay.close()


def relay_health(relay_port: int, worker_id: str, tls: TlsMaterial | None):
    """A PPP Health call through the relay, on a gateway's channel with ``tls``."""
    route = WorkerRoute(worker_id, relay_target(worker_id), f"127.0.0.1:{relay_port}", "")

    async def call():
        async with open_channel(route, tls=tls) as channel:
            return await ppp_grpc.PluginWorkerStub(channel).Health(ppp_pb2.HealthRequest(), timeout=5)

    return call()


async def list_workers(channel: grpc.aio.Channel) -> sup_pb2.ListWorkersResponse:
    async with channel:
        return await sup_grpc.RuntimeSupervisorStub(channel).ListWorkers(sup_pb2.ListWorkersRequest(), timeout=5)


async def test_a_gateway_with_a_certificate_of_the_ca_reaches_the_api_and_the_relay(tls_supervisor):
    supervisor, address, relay_port = tls_supervisor
    assert (await list_workers(secure_channel(address, material(GATEWAY), options=[]))).supervisor_id == "python-test"
    worker, _, _, _ = await supervisor.allocate(SUBTRACT)
    assert (
        await relay_health(relay_port, worker.worker_id, material(GATEWAY))
    ).status == ppp_pb2.HealthResponse.SERVING


async def test_the_relay_refuses_and_logs_a_missing_or_foreign_client_certificate(tls_supervisor, caplog):
    supervisor, _, relay_port = tls_supervisor
    caplog.set_level(logging.WARNING, "platform_core.supervisor.ppp_relay")
    worker, _, _, _ = await supervisor.allocate(SUBTRACT)
    foreign = make_leaf(STRANGER_CA, "gateway", ["gateway"], server=False)
    foreign_material = TlsMaterial(foreign.cert_pem(), foreign.key_pem(), CA.cert_pem())
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await relay_health(relay_port, worker.worker_id, foreign_material)
    assert wrong.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as cleartext:  # plain HTTP/2 where TLS is expected
        await relay_health(relay_port, worker.worker_id, None)
    assert cleartext.value.code() == grpc.StatusCode.UNAVAILABLE
    refusals = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(refusals) == 2 and all(worker.worker_id in r for r in refusals), caplog.text


async def test_missing_or_foreign_client_certificates_are_refused_and_logged(tls_supervisor, capfd):
    _, address, _ = tls_supervisor
    no_certificate = grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(CA.cert_pem()))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await list_workers(no_certificate)
    assert missing.value.code() == grpc.StatusCode.UNAVAILABLE
    foreign = make_leaf(STRANGER_CA, "gateway", ["gateway"], server=False)
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await list_workers(
            secure_channel(address, TlsMaterial(foreign.cert_pem(), foreign.key_pem(), CA.cert_pem()), options=[])
        )
    assert wrong.value.code() == grpc.StatusCode.UNAVAILABLE
    plain = grpc.aio.insecure_channel(address)
    with pytest.raises(grpc.aio.AioRpcError) as cleartext:
        await list_workers(plain)
    assert cleartext.value.code() == grpc.StatusCode.UNAVAILABLE
    # gRPC's TLS layer logs each refused handshake on the supervisor's stderr (its log).
    log = capfd.readouterr().err
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in log
    assert "Handshake failed" in log


async def test_a_gateway_refuses_a_supervisor_whose_certificate_another_ca_signed(socket_root):
    supervisor = make_supervisor(socket_root)
    server = grpc.aio.server()
    grpc_service.add_to_server(server, supervisor, LocalHost(socket_root=str(socket_root)))
    impostor = make_leaf(STRANGER_CA, "supervisor", ["127.0.0.1"], server=True)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(material(impostor, STRANGER_CA)))
    await server.start()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await list_workers(secure_channel(f"127.0.0.1:{port}", material(GATEWAY), options=[]))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await supervisor.shutdown()
        await server.stop(None)


async def test_the_supervisor_name_is_checked_unless_an_override_names_the_certificate(tls_supervisor):
    _, address, _ = tls_supervisor
    by_name = address.replace("127.0.0.1", "localhost")  # not among the certificate's names
    with pytest.raises(grpc.aio.AioRpcError):
        await list_workers(secure_channel(by_name, material(GATEWAY), options=[]))
    overridden = TlsMaterial(GATEWAY.cert_pem(), GATEWAY.key_pem(), CA.cert_pem(), server_name="127.0.0.1")
    assert (await list_workers(secure_channel(by_name, overridden, options=[]))).supervisor_id == "python-test"


def test_settings_take_pem_text_or_files_all_three_or_none(monkeypatch, tmp_path):
    for name in ("SUPERVISOR_TLS_CERT", "SUPERVISOR_TLS_KEY", "SUPERVISOR_TLS_CA", "SUPERVISOR_TLS_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    assert tls_from_env() is None
    write_dev_certs(tmp_path, supervisor_names=["sup-a"])
    monkeypatch.setenv("SUPERVISOR_TLS_CERT_FILE", str(tmp_path / "supervisor.crt"))
    with pytest.raises(ImproperlyConfigured, match="missing SUPERVISOR_TLS_KEY, SUPERVISOR_TLS_CA"):
        tls_from_env()
    monkeypatch.setenv("SUPERVISOR_TLS_KEY_FILE", str(tmp_path / "supervisor.key"))
    monkeypatch.setenv("SUPERVISOR_TLS_CA", (tmp_path / "ca.crt").read_text())
    tls = tls_from_env()
    assert tls is not None and tls.cert.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" not in repr(tls).encode()
    monkeypatch.setenv("SUPERVISOR_TLS_CA", str(tmp_path / "ca.crt"))  # a path where PEM text belongs
    with pytest.raises(ImproperlyConfigured, match="SUPERVISOR_TLS_CA is not PEM text"):
        tls_from_env()


def test_makecerts_keeps_its_ca_and_names_the_supervisors(tmp_path):
    call_command("makecerts", "--out", str(tmp_path), "--name", "sup-a.internal", "--name", "10.1.2.3")
    first_ca = (tmp_path / "ca.crt").read_bytes()
    assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"
    call_command("makecerts", "--out", str(tmp_path), "--name", "sup-b.internal")
    assert (tmp_path / "ca.crt").read_bytes() == first_ca
    from cryptography import x509

    names = (
        x509.load_pem_x509_certificate((tmp_path / "supervisor.crt").read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert "sup-b.internal" in names.get_values_for_type(x509.DNSName)
    assert "localhost" in names.get_values_for_type(x509.DNSName)


def test_beyond_loopback_a_supervisor_needs_allow_remote_and_mutual_tls(settings):
    settings.PLATFORM_SUPERVISOR_TLS = None
    settings.PLATFORM_SUPERVISOR_SECRET = "a secret alone is not enough"
    with pytest.raises(CommandError, match="not loopback"):
        call_command("runsupervisor", "--runtime", "python", "--listen", "0.0.0.0:19999")
    with pytest.raises(CommandError, match="without mutual TLS"):
        call_command("runsupervisor", "--runtime", "python", "--listen", "0.0.0.0:19999", "--allow-remote")

"""Security over HTTP: keys required, tenants isolated, supervisors behind a shared secret."""

from __future__ import annotations

import grpc
import pytest

from platform_core.rpc import sup_grpc, sup_pb2
from tests.reliability.hostile import Background
from tests.support.platform import Platform, running_worker, wait_for

pytestmark = pytest.mark.e2e


def test_requests_without_a_valid_key_get_401_at_the_edge(platform):
    with platform.client(api_key="pp_00000000_forged") as forged:
        response = forged.post("/api/v1/calculate/subtract", json={"operand1": 1, "operand2": 1})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "unauthenticated"


def test_tenants_see_only_their_own_invocations_over_http(platform):
    acme, globex = platform.create_api_key("acme"), platform.create_api_key("globex")
    with platform.client(api_key=acme) as a, platform.client(api_key=globex) as g:
        made = a.post("/api/v1/calculate/subtract", json={"operand1": 3, "operand2": 1}).json()
        assert made["result"] == 2.0
        assert a.get(f"/api/v1/invocations/{made['invocation_id']}").json()["tenant_id"] == "acme"
        assert g.get(f"/api/v1/invocations/{made['invocation_id']}").status_code == 404
        assert made["invocation_id"] not in g.get("/api/v1/invocations").text


def test_tenants_see_only_the_workers_started_for_them(platform):
    acme, globex = platform.create_api_key("acme"), platform.create_api_key("globex")
    with platform.client(api_key=acme) as a, platform.client(api_key=globex) as g, platform.client() as staff:
        call = Background.post(
            platform, "/api/v1/plugins/slow_count/invoke", {"steps": 20, "delay_ms": 100}, api_key=acme
        )
        worker = running_worker(staff, "slow_count")

        def listed(client) -> set[str]:
            return {w["worker_id"] for s in client.get("/api/v1/workers").json()["supervisors"] for w in s["workers"]}

        assert worker["worker_id"] in listed(a) and worker["tenant_id"] == "acme"
        assert worker["worker_id"] not in listed(g)
        assert not [w for s in g.get("/api/v1/workers").json()["supervisors"] for w in s["workers"]]
        assert call.result(timeout_s=30).status_code == 200


def test_supervisor_with_a_secret_serves_the_gateway_and_refuses_others():
    secured = Platform(extra_env={"SUPERVISOR_SECRET": "e2e-s3cret"}).start()
    try:
        with secured.client() as client:
            response = client.post("/api/v1/calculate/subtract", json={"operand1": 10, "operand2": 5})
            assert response.status_code == 200, response.text
        with grpc.insecure_channel(f"127.0.0.1:{secured.supervisor_ports['python']}") as channel:
            with pytest.raises(grpc.RpcError) as refused:
                sup_grpc.RuntimeSupervisorStub(channel).ListWorkers(sup_pb2.ListWorkersRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        secured.stop()


def test_one_tenant_cannot_take_every_worker_slot_from_another():
    """Issue 11, item 10, with two tenants over HTTP: while globex uses the supervisor, acme holds
    at most its share (TENANT_SLOT_SHARE) of the slots; past it, 503 no_capacity + Retry-After,
    and globex's calls still get a worker."""
    shared = Platform(extra_env={"SUPERVISOR_MAX_WORKERS": "4", "TENANT_SLOT_SHARE": "0.5"}).start()
    try:
        acme, globex = shared.create_api_key("acme"), shared.create_api_key("globex")
        with shared.client(api_key=globex) as g, shared.client() as staff:
            assert g.post("/api/v1/calculate/subtract", json={"operand1": 3, "operand2": 1}).status_code == 200
            slow = {"steps": 40, "delay_ms": 100}
            calls = [Background.post(shared, "/api/v1/plugins/slow_count/invoke", slow, api_key=acme) for _ in range(4)]
            wait_for(lambda: sum(not c.thread.is_alive() for c in calls) >= 2, what="two answers", timeout_s=20)
            refused = [call.result() for call in calls if not call.thread.is_alive()]
            assert [r.status_code for r in refused] == [503, 503], [r.text for r in refused]
            for response in refused:
                assert response.json()["error"]["code"] == "no_capacity"
                assert "fair share" in response.json()["error"]["message"]
                assert int(response.headers["Retry-After"]) >= 1
            acme_workers = [w for s in staff.get("/api/v1/workers").json()["supervisors"] for w in s["workers"]]
            assert [w["tenant_id"] for w in acme_workers] == ["acme", "acme"]
            during = g.post("/api/v1/calculate/subtract", json={"operand1": 3, "operand2": 1})
            assert during.status_code == 200, during.text  # a slot was left for globex
            assert sorted(call.result(timeout_s=60).status_code for call in calls) == [200, 200, 503, 503]
    finally:
        shared.stop()

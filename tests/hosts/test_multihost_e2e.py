"""Workers on several hosts, simulated on this machine (docs/DEPLOYMENT.md, "Several hosts").

host-a (127.0.1.2: python and java supervisors) and host-b (127.0.1.3: python) are private mount
namespaces with their own tmpfs socket roots: the gateway cannot open their workers' sockets and
reaches them through their supervisors' PPP relays, over mutual TLS. host-c (127.0.1.4) presents
a certificate of another CA and must never be used.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.deployment.conftest import unavailable
from tests.support.hosts import MultiHost, WorkerHost, can_simulate_hosts
from tests.support.waits import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.hosts]

SUBTRACT = {"operand1": 10, "operand2": 5}


@pytest.fixture(scope="module")
def hosts():
    if why := can_simulate_hosts():
        unavailable(why)
    platform = MultiHost(
        runtimes=(),
        absent_runtimes=(),
        worker_hosts=(
            WorkerHost("host-a", "127.0.1.2", ("python", "java")),
            WorkerHost("host-b", "127.0.1.3", ("python",)),
            WorkerHost("host-c", "127.0.1.4", ("python",), impostor=True),
        ),
        # A host that comes back is listed (and used) again quickly.
        extra_env={"SUPERVISOR_DOWN_S": "1", "SUPERVISOR_LIST_INTERVAL_S": "0.3"},
    )
    try:
        platform.start()
        pooled = {"mode": "pooled", "min_idle": 1, "max_workers": 2, "max_concurrency": 4, "queue_timeout_s": 20.0}
        platform.add_plugin_variant("subtract_numbers", "subtract_pooled", **pooled)
        platform.add_plugin_variant("add_numbers", "add_pooled", **pooled)
        platform.add_plugin_variant("slow_count", "slow_count_short", timeout_s=1.0)
        yield platform
    finally:
        platform.stop()
    assert not platform.leftover_workers(), "workers survived their hosts' supervisors"
    assert not platform.leftover_namespaces(), "a simulated host's namespace outlived its processes"


@pytest.fixture
def api(hosts):
    with hosts.client() as client:
        yield client


def host_by_name(hosts: MultiHost, name: str) -> WorkerHost:
    return next(host for host in hosts.worker_hosts if host.name == name)


def channel_route(api, invocation_id: str) -> str:
    """The trace's channel_open detail: which path the PPP session took."""
    trace = api.get(f"/api/v1/invocations/{invocation_id}").json()["trace"]
    return next(event["detail"] for event in trace if event["kind"] == "channel_open")


def invoke(api, operation: str, body: dict) -> tuple[dict, str]:
    response = api.post(f"/api/v1/calculate/{operation}", json=body)
    assert response.status_code == 200, response.text
    document = response.json()
    return document, channel_route(api, document["invocation_id"])


def test_invocations_land_on_both_hosts_through_their_relays(hosts, api):
    routes = []
    for _ in range(8):
        document, route = invoke(api, "subtract", SUBTRACT)
        assert document["result"] == 5.0
        routes.append(route)
    assert all(r.startswith("Create channel: relay via supervisor") and "over mutual TLS" in r for r in routes), routes
    used = {ip for ip in ("127.0.1.2", "127.0.1.3", "127.0.1.4") if any(ip in r for r in routes)}
    assert used == {"127.0.1.2", "127.0.1.3"}, routes
    assert any("on host-a" in r for r in routes) and any("on host-b" in r for r in routes)


def test_pooled_workers_are_reused_through_the_relay_and_their_sockets_stay_invisible(hosts, api):
    routes = [invoke(api, "subtract_pooled", SUBTRACT)[1] for _ in range(6)]
    assert any(r.startswith("Reuse channel: relay via supervisor") for r in routes), routes
    listing = api.get("/api/v1/workers").json()
    pooled = [w for s in listing["supervisors"] for w in s["workers"] if w["plugin"] == "subtract_pooled"]
    assert pooled, listing
    # Alive on their hosts, yet nothing of them in the gateway's view of the socket root.
    assert not list(hosts.socket_root.rglob("*.sock"))


@pytest.mark.java
@pytest.mark.parametrize("operation", ["add", "add_pooled"])
def test_java_workers_answer_from_another_host(api, operation):
    for _ in range(2):
        document, route = invoke(api, operation, SUBTRACT)
        assert document["result"] == 15.0
        assert "relay via supervisor 127.0.1.2:" in route and "on host-a" in route


def test_workers_are_grouped_by_host_and_the_impostor_is_refused(hosts, api):
    listing = api.get("/api/v1/workers").json()
    by_name = {host["host_name"]: host for host in listing["hosts"]}
    assert {"host-a", "host-b"} <= set(by_name)
    assert len(by_name["host-a"]["supervisors"]) == 2 and len(by_name["host-b"]["supervisors"]) == 1
    impostor = host_by_name(hosts, "host-c").address("python")
    [entry] = [s for s in listing["supervisors"] if s["address"] == impostor]
    assert entry["up"] is False and "UNAVAILABLE" in entry["error"]
    # Refused by TLS, not by chance: one side's gRPC logged the failed handshake.
    logs = hosts.log("gateway") + hosts.log("host-c-python")
    assert "Handshake failed" in logs or "CERTIFICATE_VERIFY_FAILED" in logs


def executing(api, plugin: str, timeout_s: float = 15.0) -> tuple[str, dict]:
    """(supervisor address, worker) of the first executing worker of ``plugin``, polled until ``timeout_s``."""
    found: list[tuple[str, dict]] = []

    def listed() -> bool:
        found[:] = [
            (supervisor["address"], worker)
            for supervisor in api.get("/api/v1/workers").json()["supervisors"]
            for worker in supervisor["workers"]
            if worker["plugin"] == plugin and worker["state"] == "executing"
        ]
        return bool(found)

    wait_for(listed, what=f"an executing {plugin} worker", timeout_s=timeout_s, every_s=0.05)
    return found[0]


def in_background(hosts: MultiHost, path: str, body: dict) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def call() -> None:
        with hosts.client() as client:
            outcome["response"] = client.post(path, json=body)

    runner = threading.Thread(target=call)
    runner.start()
    return runner, outcome


def test_a_remote_worker_killed_mid_invocation_is_502_with_the_cause_its_supervisor_saw(hosts, api):
    runner, outcome = in_background(hosts, "/api/v1/plugins/slow_count/invoke", {"steps": 40, "delay_ms": 100})
    _, worker = executing(api, "slow_count")
    os.kill(worker["pid"], signal.SIGKILL)  # one machine, one pid namespace: the test can reach it
    killed_at = time.monotonic()
    runner.join(30)
    # As fast as on a local socket: the relay drops the gateway's connection when the worker's drops.
    assert time.monotonic() - killed_at < 5, "the worker's death took long to cross the relay"
    response = outcome["response"]
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "worker_lost" and "killed by SIGKILL" in error["message"], error
    assert "relay via supervisor" in channel_route(api, response.json()["invocation_id"])


def test_a_remote_invocation_past_its_timeout_is_504_and_its_worker_is_cancelled(api):
    response = api.post("/api/v1/plugins/slow_count_short/invoke", json={"steps": 100, "delay_ms": 100})
    assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
    invocation_id = response.json()["invocation_id"]
    trace = api.get(f"/api/v1/invocations/{invocation_id}").json()["trace"]
    kinds = [event["kind"] for event in trace]
    assert "cancel_request" in kinds and "worker_removed" in kinds
    assert "relay via supervisor" in channel_route(api, invocation_id)


def test_a_host_killed_mid_invocation_fails_that_call_and_the_next_ones_go_elsewhere(hosts, api):
    runner, outcome = in_background(hosts, "/api/v1/plugins/slow_count/invoke", {"steps": 40, "delay_ms": 100})
    address, _ = executing(api, "slow_count")
    victim = next(h for h in hosts.worker_hosts if h.ports.get("python") and h.address("python") == address)
    hosts.stop_process(hosts.process_name(victim, "python"), sig=signal.SIGKILL)
    killed_at = time.monotonic()
    runner.join(30)
    assert time.monotonic() - killed_at < 5, "the in-flight request hung on the dead host"
    response = outcome["response"]
    # The worker's stream or the supervisor's channel breaks first: either answer, each with its code.
    outcome = (response.status_code, response.json()["error"]["code"])
    assert outcome in {(502, "worker_lost"), (503, "supervisor_unavailable")}, response.text

    for _ in range(4):
        document, route = invoke(api, "subtract", SUBTRACT)
        assert address not in route and document["result"] == 5.0

    # The host comes back (same namespace while its java supervisor lives, else a fresh one) and
    # gets work again.
    hosts.start_host_supervisor(victim, "python")
    wait_for(
        lambda: address in invoke(api, "subtract", SUBTRACT)[1],
        what=f"{victim.name} used again after it came back",
        timeout_s=30,
        every_s=0,
    )

"""The Node.js runtime end to end over HTTP: the node supervisor, count_primes on the Node SDK."""

from __future__ import annotations

import pytest

from platform_core.runtimes import ROOT, worker_id_base
from tests.conftest import add_plugin_variant
from tests.support.platform import killed_mid_invocation

pytestmark = [pytest.mark.e2e, pytest.mark.node]


@pytest.fixture(scope="module", autouse=True)
def node_modules():
    if not (ROOT / "plugin_workers" / "node" / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("plugin_workers/node/node_modules is not installed: run `make node`")


def test_count_primes_runs_on_a_node_worker(api):
    response = api.post("/api/v1/plugins/count_primes/invoke", json={"limit": 100_000})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["result"]["count"], body["result"]["largest"]) == (9592, 99991)
    number = int(body["worker_id"].removeprefix("worker-"))
    assert worker_id_base("node") < number < worker_id_base("node") + 10_000, "node's own worker id range"
    stored = api.get(f"/api/v1/invocations/{body['invocation_id']}").json()
    assert stored["runtime"] == "node"
    kinds = [e["kind"] for e in stored["trace"]]
    assert kinds.count("progress") == 10, "a progress message per segment, streamed into the trace"
    assert "Health SERVING after" in next(e for e in stored["trace"] if e["kind"] == "worker_ready")["detail"]
    assert "sieving 2..100000 in 10 segments" in stored["worker_log"], "PPP Log messages reach the record"


def test_a_large_node_result_arrives_whole(api):
    response = api.post("/api/v1/plugins/count_primes/invoke", json={"limit": 2_000_000, "list": True})

    assert response.status_code == 200, response.text
    primes = response.json()["result"]["primes"]
    assert (len(primes), primes[:4], primes[-1]) == (148_933, [2, 3, 5, 7], 1_999_993)


def test_the_node_workers_own_validation_answers_400(platform, api):
    # The registry's schema would stop this before any worker starts; the variant lets it through.
    add_plugin_variant(platform, "count_primes", "count_primes_unchecked", input_schema={"type": "object"})

    response = api.post("/api/v1/plugins/count_primes_unchecked/invoke", json={"limit": "many"})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and "'limit' must be an integer" in error["message"]


def test_pooled_node_workers_are_reused(platform, api):
    add_plugin_variant(platform, "count_primes", "count_primes_pooled", mode="pooled", min_idle=0, max_workers=1)

    first = api.post("/api/v1/plugins/count_primes_pooled/invoke", json={"limit": 1000})
    second = api.post("/api/v1/plugins/count_primes_pooled/invoke", json={"limit": 10})

    assert (first.status_code, second.status_code) == (200, 200), second.text
    assert second.json()["result"]["count"] == 4
    assert first.json()["worker_id"] == second.json()["worker_id"]
    assert api.get(f"/api/v1/invocations/{second.json()['invocation_id']}").json()["worker_warm"] is True


def test_a_node_worker_killed_mid_invocation_is_502_and_gone(platform, api):
    response, worker = killed_mid_invocation(platform, api, "count_primes", {"limit": 1000, "delay_ms": 300})

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "worker_lost"
    assert worker["worker_id"] not in str(api.get("/api/v1/workers").json())

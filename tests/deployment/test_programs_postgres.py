"""Async invocations on PostgreSQL (SELECT … FOR UPDATE SKIP LOCKED) shared by two gateways, and a
cancel request that reaches the gateway process running the invocation from another gateway."""

from __future__ import annotations

import json

import pytest

from tests.support.platform import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


def _status(api, invocation_id: str) -> str:
    return api.get(f"/api/v1/invocations/{invocation_id}").json()["status"]


def test_queued_invocations_run_once_each_whichever_gateway_claims_them(cluster):
    with cluster.gateway_client(0) as a, cluster.gateway_client(1) as b:
        ids = [
            (a if n % 2 else b)
            .post("/api/v1/plugins/slow_count/invocations", json={"steps": 2, "delay_ms": 50})
            .json()["invocation_id"]
            for n in range(20)
        ]
        for invocation_id in ids:
            wait_for(lambda i=invocation_id: _status(a, i) == "succeeded", what="queued ones run", timeout_s=90)
        for invocation_id in ids:
            stored = b.get(f"/api/v1/invocations/{invocation_id}").json()
            kinds = [event["kind"] for event in stored["trace"]]
            assert kinds.count("request") == 1 and kinds.count("invoke_request") == 1, kinds
            assert stored["result"]["counted"] == 2


def test_a_cancel_sent_to_one_gateway_reaches_the_one_running_it(cluster):
    with cluster.gateway_client(0) as a, cluster.gateway_client(1) as b:
        invocation_id = a.post("/api/v1/plugins/slow_count/invocations", json={"steps": 100, "delay_ms": 100}).json()[
            "invocation_id"
        ]
        wait_for(lambda: _status(b, invocation_id) == "running", what="running", timeout_s=30)
        response = b.post(f"/api/v1/invocations/{invocation_id}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        # Its events, from either gateway, end with the cancellation.
        with b.stream("GET", f"/api/v1/invocations/{invocation_id}/events") as events:
            lines = list(events.iter_lines())
        names = [line for line in lines if line.startswith("event:")]
        assert "event: cancelled" in names and names[-1] == "event: error", lines
        assert '"code": "cancelled"' in lines[-2], lines


def test_idempotency_keys_are_shared_by_the_gateways(cluster):
    headers = {"Idempotency-Key": "pg-shared-key"}
    body = {"operand1": 3, "operand2": 1}
    with cluster.gateway_client(0, headers=headers) as a, cluster.gateway_client(1, headers=headers) as b:
        first = a.post("/api/v1/calculate/subtract", json=body)
        again = b.post("/api/v1/calculate/subtract", json=body)
    assert first.status_code == again.status_code == 200
    assert json.loads(again.text)["invocation_id"] == first.json()["invocation_id"]


def test_events_of_an_invocation_another_gateway_runs_arrive_live(cluster):
    import time

    from tests.programs.sse_client import messages

    with cluster.gateway_client(0) as a, cluster.gateway_client(1) as b:
        for _ in range(2):  # run by gateway a (its consumer is woken at once), followed on gateway b
            invocation_id = a.post(
                "/api/v1/plugins/slow_count/invocations", json={"steps": 10, "delay_ms": 300}
            ).json()["invocation_id"]
            arrived: list[tuple[str, float, dict]] = []
            with b.stream("GET", f"/api/v1/invocations/{invocation_id}/events") as events:
                for message in messages(events):
                    arrived.append((message.event, time.monotonic(), message.data))
            names = [name for name, _, _ in arrived]
            timeline = [(name, round(at - arrived[0][1], 2)) for name, at, _ in arrived]
            assert names[-1] == "result", timeline
            progress = [(at, data["percent"]) for name, at, data in arrived if name == "progress"]
            assert [percent for _, percent in progress] == [10.0 * n for n in range(1, 11)], timeline
            # Live: the first progress came long before the result (10 steps of 300 ms), not all at the end.
            assert arrived[-1][1] - progress[0][0] > 1.5, timeline
            assert "allocated" in names and "started" in names, timeline

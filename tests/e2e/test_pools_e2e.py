"""Pooled mode over HTTP: warm workers reused, traces marked warm, admission control with 503."""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.e2e


def test_pooled_invocations_reuse_a_warm_worker(api):
    first = api.post("/api/v1/plugins/subtract_pooled/invoke", json={"operand1": 7, "operand2": 2})
    second = api.post("/api/v1/plugins/subtract_pooled/invoke", json={"operand1": 9, "operand2": 2})

    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    assert (first.json()["result"]["result"], second.json()["result"]["result"]) == (5.0, 7.0)
    # The pool keeps min_idle warm workers: the second call gets one of them, never a new spawn.
    stored = api.get(f"/api/v1/invocations/{second.json()['invocation_id']}").json()
    assert stored["worker_warm"] is True
    kinds = [e["kind"] for e in stored["trace"]]
    assert "worker_spawning" not in kinds, "a warm worker is not spawned again"
    assert "init_cached" in kinds
    assert "worker_idle" in kinds, "the worker goes back to its pool"
    assert "worker_stopping" not in kinds
    workers = [w for s in api.get("/api/v1/workers").json()["supervisors"] for w in s["workers"]]
    assert any(w["worker_id"] == second.json()["worker_id"] and w["state"] == "idle" for w in workers)


def test_a_full_pool_answers_503_with_retry_after(platform, api):
    holder: dict = {}

    def hold() -> None:
        with platform.client() as client:
            holder["response"] = client.post(
                "/api/v1/plugins/slow_count_pooled/invoke", json={"steps": 10, "delay_ms": 150}
            )

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        # Wait until the only worker of the pool is busy.
        for _ in range(500):
            workers = [w for s in api.get("/api/v1/workers").json()["supervisors"] for w in s["workers"]]
            if any(w["plugin"] == "slow_count_pooled" and w["state"] == "executing" for w in workers):
                break
        refused = api.post("/api/v1/plugins/slow_count_pooled/invoke", json={"steps": 1, "delay_ms": 0})
    finally:
        thread.join(timeout=30)

    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "no_capacity"
    assert int(refused.headers["Retry-After"]) >= 1
    assert holder["response"].status_code == 200
    stored = api.get(f"/api/v1/invocations/{refused.json()['invocation_id']}").json()
    assert stored["status"] == "unavailable"

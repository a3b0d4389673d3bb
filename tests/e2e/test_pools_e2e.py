"""Pooled mode over HTTP: warm workers reused, traces marked warm, admission control with 503."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tests.support.waits import wait_for

pytestmark = pytest.mark.e2e


def test_pooled_invocations_reuse_a_warm_worker(api):
    first = api.post("/api/v1/plugins/subtract_pooled/invoke", json={"operand1": 7, "operand2": 2})
    second = api.post("/api/v1/plugins/subtract_pooled/invoke", json={"operand1": 9, "operand2": 2})

    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    assert (first.json()["result"]["result"], second.json()["result"]["result"]) == (5.0, 7.0)
    # The gateway keeps the seat of the first call: the second one runs on it without asking the
    # supervisor anything (no AllocateWorker, no ReleaseWorker), on an initialized channel.
    stored = api.get(f"/api/v1/invocations/{second.json()['invocation_id']}").json()
    assert stored["worker_warm"] is True and stored["worker_id"] == first.json()["worker_id"]
    kinds = [e["kind"] for e in stored["trace"] if e["kind"] not in {"log", "progress"}]  # the plugin's own
    assert kinds == [
        "request",
        "lookup",
        "lookup_result",
        "validate_input",
        "allocate_request",
        "lease_used",
        "channel_open",
        "init_cached",
        "invoke_request",
        "completed",
        "validate_output",
        "channel_close",
        "lease_returned",
        "response",
    ]
    offsets = [e["offset_ms"] for e in stored["trace"]]
    assert offsets == sorted(offsets), "the trace is in time order"
    assert all(stored["timings_ms"][phase] is not None for phase in ("allocation", "init", "execution", "release"))
    # The supervisor learns of the use from the gateway's lease report, a moment later.
    wait_for(
        lambda: any(
            w["worker_id"] == second.json()["worker_id"] and w["state"] == "idle" and w["uses"] >= 2
            for s in api.get("/api/v1/workers").json()["supervisors"]
            for w in s["workers"]
        ),
        what="the workers list shows the worker idle with both uses",
    )


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


def test_a_kept_worker_that_crashes_is_never_used_again(platform, api):
    platform.add_plugin_variant("subtract_numbers", "subtract_crashy", mode="pooled", min_idle=0, max_workers=2)
    first = api.post("/api/v1/plugins/subtract_crashy/invoke", json={"operand1": 3, "operand2": 1}).json()
    (worker,) = [
        w
        for s in api.get("/api/v1/workers").json()["supervisors"]
        for w in s["workers"]
        if w["worker_id"] == first["worker_id"]
    ]
    os.kill(worker["pid"], signal.SIGKILL)

    def states() -> dict[str, str]:
        return {
            w["worker_id"]: w["state"] for s in api.get("/api/v1/workers").json()["supervisors"] for w in s["workers"]
        }

    wait_for(lambda: states().get(first["worker_id"], "failed") == "failed", what="the supervisor saw it die")
    after = api.post("/api/v1/plugins/subtract_crashy/invoke", json={"operand1": 3, "operand2": 1})
    assert after.status_code == 200, after.text
    assert after.json()["worker_id"] != first["worker_id"]
    wait_for(
        lambda: (
            first["worker_id"]
            not in {w["worker_id"] for s in api.get("/api/v1/workers").json()["supervisors"] for w in s["workers"]}
        ),
        what="the crashed worker is retired",
    )

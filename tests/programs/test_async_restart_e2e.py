"""An async invocation survives its gateway: queued in the database, run by the gateway's next life."""

from __future__ import annotations

import signal

import pytest

from tests.support.platform import Platform, wait_for

pytestmark = pytest.mark.e2e


def test_queued_invocations_run_after_the_gateway_is_killed_and_started_again():
    # One queued invocation at a time in this gateway: the others wait in the queue.
    platform = Platform(extra_env={"ASYNC_CONCURRENCY": "1"}).start()
    try:
        with platform.client() as api:
            ids = [
                api.post("/api/v1/plugins/slow_count/invocations", json={"steps": 20, "delay_ms": 100}).json()[
                    "invocation_id"
                ]
                for _ in range(3)
            ]

            def status(invocation_id: str) -> str:
                return api.get(f"/api/v1/invocations/{invocation_id}").json()["status"]

            wait_for(lambda: status(ids[0]) == "running", what="the first running", timeout_s=15)
            assert [status(i) for i in ids[1:]] == ["queued", "queued"]
        platform.stop_process("gateway", signal.SIGKILL)

        platform.start_gateway()

        with platform.client() as api:
            for invocation_id in ids[1:]:
                wait_for(lambda i=invocation_id: status(i) == "succeeded", what="queued ones run", timeout_s=60)
                stored = api.get(f"/api/v1/invocations/{invocation_id}").json()
                assert stored["result"]["counted"] == 20
            # The one that was running when its gateway died is not run twice: it is interrupted.
            first = api.get(f"/api/v1/invocations/{ids[0]}").json()
            assert first["status"] == "interrupted"
            assert [event["kind"] for event in first["trace"]] == ["queued", "interrupted"]
    finally:
        platform.stop()
    assert not platform.leftover_workers()

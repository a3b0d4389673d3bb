"""Async invocations (202 + Location, the durable queue), cancellation and Idempotency-Key, over HTTP."""

from __future__ import annotations

import shutil
import threading
import time
import uuid

import pytest

from tests.programs.sse_client import messages
from tests.support.platform import wait_for

pytestmark = pytest.mark.e2e


def _status(api, invocation_id: str) -> str:
    return api.get(f"/api/v1/invocations/{invocation_id}").json()["status"]


def _wait_status(api, invocation_id: str, statuses: set[str], timeout_s: float = 30.0) -> dict:
    wait_for(lambda: _status(api, invocation_id) in statuses, what=f"status in {statuses}", timeout_s=timeout_s)
    return api.get(f"/api/v1/invocations/{invocation_id}").json()


def test_async_invocation_answers_202_then_runs(papi):
    response = papi.post("/api/v1/plugins/slow_count/invocations", json={"steps": 2, "delay_ms": 50})
    assert response.status_code == 202, response.text
    body = response.json()
    invocation_id = body["invocation_id"]
    assert response.headers["location"] == f"/api/v1/invocations/{invocation_id}" == body["location"]
    assert _status(papi, invocation_id) in {"queued", "running", "succeeded"}
    # Its events from the start, whenever the client connects: here, while it may still be queued.
    with papi.stream("GET", f"/api/v1/invocations/{invocation_id}/events") as events:
        received = list(messages(events))
    assert received[-1].event == "result" and received[-1].data["result"]["counted"] == 2
    assert "progress" in [m.event for m in received]
    stored = papi.get(f"/api/v1/invocations/{invocation_id}").json()
    assert stored["status"] == "succeeded" and stored["result"]["counted"] == 2
    assert stored["trace"][0]["detail"].startswith("POST /api/v1/plugins/slow_count/invocations (async, queued")


def test_async_unknown_plugin_is_404_at_once_and_bad_input_is_recorded(papi):
    response = papi.post("/api/v1/plugins/no_such_plugin/invocations", json={})
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_plugin"
    response = papi.post("/api/v1/plugins/slow_count/invocations", json={"steps": "many"})
    assert response.status_code == 202
    stored = _wait_status(papi, response.json()["invocation_id"], {"rejected"})
    assert stored["error"]["code"] == "invalid_input" and stored["http_status"] == 400


def test_cancel_a_running_python_invocation(papi, programs_platform):
    _cancel_running(papi, programs_platform, "slow_count")


@pytest.mark.java
def test_cancel_a_running_java_invocation(papi, programs_platform):
    if "java" not in programs_platform.runtimes or not shutil.which("java"):
        pytest.skip("no Java runtime here")
    _cancel_running(papi, programs_platform, "slow_count_java")


@pytest.mark.node
def test_cancel_a_running_node_invocation(papi, programs_platform):
    if "node" not in programs_platform.runtimes:
        pytest.skip("no Node.js here")
    _cancel_running(papi, programs_platform, "count_primes", {"limit": 50_000_000, "delay_ms": 200})


def _cancel_running(papi, platform, plugin: str, arguments: dict | None = None) -> None:
    arguments = arguments or {"steps": 100, "delay_ms": 200}
    response = papi.post(f"/api/v1/plugins/{plugin}/invocations", json=arguments)
    invocation_id = response.json()["invocation_id"]
    # Wait for it to make progress on its worker, then cancel.
    with papi.stream("GET", f"/api/v1/invocations/{invocation_id}/events") as events:
        for message in messages(events):
            if message.event == "progress":
                break
    worker_id = papi.get(f"/api/v1/invocations/{invocation_id}").json()
    started = time.monotonic()
    response = papi.post(f"/api/v1/invocations/{invocation_id}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert time.monotonic() - started < 10
    assert cancelled["status"] == "cancelled" and cancelled["error"]["code"] == "cancelled"
    kinds = [event["kind"] for event in cancelled["trace"]]
    assert "invocation_cancelled" in kinds and kinds[-1] == "response"
    # The worker was released never to be reused (stopped gracefully within CANCEL_GRACE_S), not left counting.
    assert "release_request" in kinds and "cancel_request" not in kinds, kinds
    worker_id = cancelled["worker_id"]
    assert worker_id

    def gone() -> bool:
        supervisors = papi.get("/api/v1/workers").json()["supervisors"]
        return all(worker["worker_id"] != worker_id for s in supervisors for worker in s["workers"])

    wait_for(gone, what=f"{worker_id} stopped", timeout_s=15)
    # Finished: a second cancel is 409.
    again = papi.post(f"/api/v1/invocations/{invocation_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "invocation_finished"
    # The events stream of a cancelled invocation ends with the cancellation.
    with papi.stream("GET", f"/api/v1/invocations/{invocation_id}/events") as events:
        received = list(messages(events))
    assert "cancelled" in [m.event for m in received]
    assert received[-1].event == "error" and received[-1].data["error"]["code"] == "cancelled"


def test_cancel_a_synchronous_invocation_from_another_connection(papi, programs_platform):
    request_id = f"sync-cancel-{uuid.uuid4()}"
    answers: list = []

    def call() -> None:
        with programs_platform.client(headers={"X-Request-ID": request_id}) as client:
            answers.append(client.post("/api/v1/plugins/slow_count/invoke", json={"steps": 100, "delay_ms": 100}))

    caller = threading.Thread(target=call)
    caller.start()

    def running() -> list:
        found = papi.get("/api/v1/invocations", params={"plugin": "slow_count", "status": "running"}).json()
        return [i for i in found["results"] if i["request_id"] == request_id]

    wait_for(running, what="the invocation running", timeout_s=15)
    invocation_id = running()[0]["id"]
    response = papi.post(f"/api/v1/invocations/{invocation_id}/cancel")
    caller.join(30)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    [answer] = answers
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "cancelled"


def test_cancel_a_queued_invocation_it_never_runs(programs_platform, papi):
    # One slot per gateway process (ASYNC_CONCURRENCY is per process): fill the queue behind a slow one.
    ids = [
        papi.post("/api/v1/plugins/slow_count/invocations", json={"steps": 10, "delay_ms": 100}).json()["invocation_id"]
        for _ in range(12)
    ]
    last = ids[-1]
    assert _status(papi, last) == "queued"
    response = papi.post(f"/api/v1/invocations/{last}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled" and cancelled["worker_id"] == ""
    assert [event["kind"] for event in cancelled["trace"]] == ["queued", "invocation_cancelled"]
    for invocation_id in ids[:-1]:
        papi.post(f"/api/v1/invocations/{invocation_id}/cancel")
    time.sleep(1.0)  # the queue consumer looks again: the cancelled one stays cancelled, no worker
    stored = papi.get(f"/api/v1/invocations/{last}").json()
    assert stored["status"] == "cancelled" and stored["worker_id"] == ""


def test_unknown_invocation_cancel_is_404(papi, programs_platform):
    response = papi.post(f"/api/v1/invocations/{uuid.uuid4()}/cancel")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_invocation"
    # Another tenant's invocation does not exist for this caller.
    mine = papi.post("/api/v1/calculate/subtract", json={"operand1": 1, "operand2": 1}).json()["invocation_id"]
    with programs_platform.client(api_key=programs_platform.create_api_key("other")) as other:
        assert other.post(f"/api/v1/invocations/{mine}/cancel").status_code == 404
        assert other.get(f"/api/v1/invocations/{mine}/events").status_code == 404


def test_idempotency_key_returns_the_first_outcome(papi):
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"operand1": 9, "operand2": 4}
    first = papi.post("/api/v1/calculate/subtract", json=body, headers=key)
    again = papi.post("/api/v1/calculate/subtract", json=body, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    listed = papi.get("/api/v1/invocations", params={"plugin": "subtract_numbers", "page_size": 200}).json()
    assert [i["id"] for i in listed["results"]].count(first.json()["invocation_id"]) == 1
    # Same key, another body: 422, recorded.
    other = papi.post("/api/v1/calculate/subtract", json={"operand1": 1, "operand2": 4}, headers=key)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert papi.get(f"/api/v1/invocations/{other.json()['invocation_id']}").json()["status"] == "rejected"


def test_idempotent_retry_attaches_to_a_running_invocation(papi, programs_platform):
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"steps": 3, "delay_ms": 300}
    answers: dict = {}

    def call(name: str) -> None:
        with programs_platform.client(headers=key) as client:
            answers[name] = client.post("/api/v1/plugins/slow_count/invoke", json=body)

    first = threading.Thread(target=call, args=("first",))
    first.start()
    time.sleep(0.3)
    call("retry")
    first.join(30)
    assert answers["first"].status_code == answers["retry"].status_code == 200
    assert answers["retry"].json()["invocation_id"] == answers["first"].json()["invocation_id"]
    # Async: the retry gets the same invocation id (202 again), never a second run.
    async_key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    one = papi.post("/api/v1/plugins/slow_count/invocations", json=body, headers=async_key)
    two = papi.post("/api/v1/plugins/slow_count/invocations", json=body, headers=async_key)
    assert one.status_code == two.status_code == 202
    assert one.json()["invocation_id"] == two.json()["invocation_id"]
    # Keys are the tenant's: another tenant with the same key runs its own invocation.
    with programs_platform.client(api_key=programs_platform.create_api_key("other2"), headers=key) as other:
        theirs = other.post("/api/v1/plugins/slow_count/invoke", json=body)
    assert theirs.status_code == 200 and theirs.json()["invocation_id"] != answers["first"].json()["invocation_id"]


def test_a_queued_invocation_waits_for_its_tenants_concurrency_quota(papi, programs_platform):
    programs_platform.manage(
        "shell",
        "-c",
        "from platform_core.tenancy.models import Tenant; "
        "Tenant.objects.update_or_create(slug='narrow', defaults={'max_concurrent': 1})",
    )
    with programs_platform.client(api_key=programs_platform.create_api_key("narrow")) as narrow:
        ids = [
            narrow.post("/api/v1/plugins/slow_count/invocations", json={"steps": 5, "delay_ms": 200}).json()[
                "invocation_id"
            ]
            for _ in range(2)
        ]
        stored = [_wait_status(narrow, i, {"succeeded", "throttled"}) for i in ids]
        # Not throttled: the second waited in the queue until the first (1 s of work) had ended.
        assert [s["status"] for s in stored] == ["succeeded", "succeeded"]
        details = [s["trace"][0]["detail"] for s in stored]
        waited = sorted(int(d.rsplit("queued ", 1)[1].split(" ms")[0]) for d in details)
        assert waited[1] >= 900, details

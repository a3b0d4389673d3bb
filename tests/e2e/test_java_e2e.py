"""The Java runtime end to end over HTTP: a java supervisor on the process backend, grpc-java workers."""

from __future__ import annotations

import pytest

from tests.conftest import add_plugin_variant
from tests.support.platform import REPO, Platform, killed_mid_invocation

pytestmark = [pytest.mark.e2e, pytest.mark.java]

JAR = REPO / "plugin_workers" / "java" / "build" / "ppp-java-worker.jar"


@pytest.fixture(scope="module")
def java_platform():
    if not JAR.exists():
        pytest.fail(f"{JAR.relative_to(REPO)} is missing: run `make java` (plugin_workers/java/build.sh)")
    running = Platform(runtimes=("python", "java"), absent_runtimes=()).start()
    # The registry's schema stops bad input before any worker starts; this variant lets it
    # through so that the Java worker's own validation answers.
    add_plugin_variant(running, "add_numbers", "add_unchecked", input_schema={"type": "object"})
    yield running
    running.stop()
    assert not running.leftover_workers()


@pytest.fixture
def japi(java_platform):
    with java_platform.client() as client:
        yield client


@pytest.mark.parametrize(("operation", "expected"), [("add", 15.0), ("multiply", 50.0)])
def test_java_calculations(japi, operation, expected):
    response = japi.post(f"/api/v1/calculate/{operation}", json={"operand1": 10, "operand2": 5})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["result"], body["operation"], body["operand1"], body["operand2"]) == (expected, operation, 10.0, 5.0)
    assert body["worker_id"].startswith("worker-1"), "java worker ids follow the seed: worker-100XX"
    stored = japi.get(f"/api/v1/invocations/{body['invocation_id']}").json()
    assert stored["runtime"] == "java"
    ready = next(e for e in stored["trace"] if e["kind"] == "worker_ready")
    assert "Health SERVING after" in ready["detail"], "the JVM's start-to-ready time is in the trace"
    assert any(e["kind"] == "progress" for e in stored["trace"])
    log_line = "Adding" if operation == "add" else "Multiplying"
    assert log_line in stored["worker_log"]


def test_java_worker_rejects_bad_input_with_400(japi):
    response = japi.post("/api/v1/plugins/add_unchecked/invoke", json={"operand1": "ten", "operand2": 5})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "operand1" in error["message"]
    stored = japi.get(f"/api/v1/invocations/{response.json()['invocation_id']}").json()
    assert any(e["kind"] == "failed" and e["source"] == "worker" for e in stored["trace"])


def test_java_worker_killed_mid_invocation_is_502_and_gone(java_platform, japi):
    response, worker = killed_mid_invocation(java_platform, japi, "slow_count_java", {"steps": 40, "delay_ms": 100})

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "worker_lost"
    assert worker["worker_id"] not in str(japi.get("/api/v1/workers").json())

"""Stem cells end to end: a Java supervisor keeps one (STEM_CELLS), the API shows it on the
workers board, and each invocation's trace says whether its worker came from a stem cell or was
spawned."""

from __future__ import annotations

import pytest

from tests.conftest import add_plugin_variant
from tests.support.platform import REPO, Platform, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.java]

JAR = REPO / "plugin_workers" / "java" / "build" / "ppp-java-worker.jar"


@pytest.fixture(scope="module")
def stem_platform():
    if not JAR.exists():
        pytest.fail(f"{JAR.relative_to(REPO)} is missing: run `make java` (plugin_workers/java/build.sh)")
    running = Platform(
        runtimes=("python", "java"), absent_runtimes=(), extra_env={"STEM_CELLS": "java/process=1"}
    ).start()
    # Another memory limit than the stem cells' class (256 MiB): its JVM's heap differs, so it spawns.
    add_plugin_variant(running, "add_numbers", "add_big", memory_mb=512)
    yield running
    running.stop()
    assert not running.leftover_workers(), "stem cells are stopped with their supervisor"


def stem_cells(api) -> list[dict]:
    supervisors = api.get("/api/v1/workers").json()["supervisors"]
    return [w for s in supervisors for w in s.get("workers", []) if w["state"] == "stem_cell"]


def allocating(api, body: dict) -> str:
    stored = api.get(f"/api/v1/invocations/{body['invocation_id']}").json()
    return next(e["detail"] for e in stored["trace"] if e["kind"] == "worker_allocating")


def test_an_invocation_takes_a_ready_stem_cell_and_its_trace_says_so(stem_platform):
    with stem_platform.client() as api:
        wait_for(lambda: stem_cells(api), what="a java stem cell on the workers board", timeout_s=60)
        (stem,) = stem_cells(api)
        java = next(s for s in api.get("/api/v1/workers").json()["supervisors"] if s["runtime"] == "java")
        assert java["stem_cells"] == [{"backend": "process", "memory_mb": 256, "count": 1}], "the settings, listed"
        response = api.post("/api/v1/calculate/add", json={"operand1": 10, "operand2": 5})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["result"] == 15.0
        assert body["worker_id"] == stem["worker_id"], "the stem cell became the invocation's worker"
        assert "from stem cell" in allocating(api, body)
        # It served that one invocation and is gone; another takes its place.
        wait_for(
            lambda: [w for w in stem_cells(api) if w["worker_id"] != stem["worker_id"]],
            what="the stem cell is refilled",
            timeout_s=60,
        )


def test_a_plugin_of_another_limit_class_is_spawned(stem_platform):
    with stem_platform.client() as api:
        response = api.post("/api/v1/plugins/add_big/invoke", json={"operand1": 1, "operand2": 2})
        assert response.status_code == 200, response.text
        assert "spawned" in allocating(api, response.json())

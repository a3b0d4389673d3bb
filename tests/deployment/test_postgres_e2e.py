"""The production topology for real: PostgreSQL, the Redis channel layer, two daphne gateways and
two python supervisors (docs/DEPLOYMENT.md)."""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

import httpx
import psycopg
import pytest
from websockets.asyncio.client import connect

from tests.support.cluster import Cluster
from tests.support.platform import REPO
from tests.support.services import POSTGRES_ADMIN_URL, fresh_postgres_database
from tests.support.waits import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


def _auth(cluster: Cluster) -> dict[str, str]:
    return {"Authorization": f"Bearer {cluster.api_key}"}


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_migrations_apply_and_reverse_on_postgresql(production_services):
    with fresh_postgres_database() as database_url, tempfile.TemporaryDirectory(prefix="ppm-") as var:
        env = {**os.environ, "DATABASE_URL": database_url, "PLATFORM_VAR_DIR": var, "DJANGO_SECRET_KEY": "migrations"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        _manage(env, "migrate", "--noinput", "-v0")
        assert "[ ]" not in _manage(env, "showmigrations")
        _manage(env, "makemigrations", "--check", "--dry-run")  # models and migrations agree
        with psycopg.connect(database_url) as db:
            tables = {row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
            builtin = db.execute("SELECT count(*) FROM registry_pluginspec").fetchone()[0]
        assert {"invocations_invocation", "registry_pluginspec", "registry_runtime"} <= tables
        assert builtin >= 4  # the built-in plugins, loaded by a data migration
        for app in ("invocations", "tenancy", "registry"):
            _manage(env, "migrate", app, "zero", "--noinput", "-v0")
        _manage(env, "migrate", "--noinput", "-v0")
        assert "[ ]" not in _manage(env, "showmigrations")


def _staff_session(cluster: Cluster, *, gateway: int) -> str:
    """Log a staff user in through the admin of one gateway; its session cookie."""
    cluster.create_user("viewer", "viewer-password", staff=True)
    with cluster.gateway_client(gateway, follow_redirects=False) as client:
        form = client.get("/admin/login/", params={"next": "/admin/"})
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)[1]
        response = client.post(
            "/admin/login/?next=/admin/",
            data={"username": "viewer", "password": "viewer-password", "csrfmiddlewaretoken": token},
        )
        assert response.status_code == 302, response.text
        return client.cookies["sessionid"]


async def test_an_invocation_through_gateway_a_streams_live_to_a_websocket_on_gateway_b(cluster):
    gateway_b = cluster.gateway_url(1)
    session = _staff_session(cluster, gateway=0)  # logged in on A: the session is in PostgreSQL
    async with (
        connect(
            gateway_b.replace("http://", "ws://") + "/ws/live/",
            origin=gateway_b,
            additional_headers={"Cookie": f"sessionid={session}"},
        ) as websocket,
        httpx.AsyncClient(base_url=cluster.gateway_url(0), headers=_auth(cluster), timeout=60) as gateway_a,
    ):
        call = asyncio.create_task(
            gateway_a.post("/api/v1/plugins/slow_count/invoke", json={"steps": 4, "delay_ms": 250})
        )
        fragments, live_progress = [], 0
        async with asyncio.timeout(60):
            while not any("status-succeeded" in fragment for fragment in fragments):
                fragments.append(fragment := str(await websocket.recv()))
                if 'data-kind="progress"' in fragment and not call.done():
                    live_progress += 1  # seen on B while A had not answered yet
        response = await call
    assert response.status_code == 200, response.text
    invocation_id = response.json()["invocation_id"]
    received = "".join(fragments)
    assert invocation_id in received
    assert live_progress >= 2, "progress was not streamed live to the other gateway"
    kinds = re.findall(r'data-kind="([a-z_]+)"', received)
    assert {"request", "allocate_rpc", "worker_allocated", "invoke_request", "completed"} <= set(kinds)

    # The history is the same on both gateways.
    with cluster.gateway_client(0) as a, cluster.gateway_client(1) as b:
        on_a, on_b = (client.get(f"/api/v1/invocations/{invocation_id}").json() for client in (a, b))
        assert on_a == on_b
        assert on_b["status"] == "succeeded" and len(on_b["trace"]) >= 10
        listing = [client.get("/api/v1/invocations", params={"plugin": "slow_count"}).json() for client in (a, b)]
        assert listing[0] == listing[1]


async def test_concurrent_invocations_on_both_gateways_are_recorded_without_loss(cluster):
    clients = [httpx.AsyncClient(base_url=cluster.gateway_url(i), headers=_auth(cluster), timeout=120) for i in (0, 1)]
    try:
        responses = await asyncio.gather(
            *(
                clients[i % 2].post("/api/v1/plugins/subtract_pooled/invoke", json={"operand1": i, "operand2": 1})
                for i in range(50)
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    assert [r.status_code for r in responses] == [200] * 50, [r.text for r in responses if r.status_code != 200]
    assert sorted(r.json()["result"]["result"] for r in responses) == [float(i - 1) for i in range(50)]
    ids = [r.json()["invocation_id"] for r in responses]
    assert len(set(ids)) == 50

    with psycopg.connect(cluster.env["DATABASE_URL"]) as db:
        statuses = Counter(
            row[0] for row in db.execute("SELECT status FROM invocations_invocation WHERE id = ANY(%s)", [ids])
        )
        traces = db.execute(
            "SELECT id, jsonb_array_length(trace), (trace->0->>'seq')::int, (trace->-1->>'seq')::int "
            "FROM invocations_invocation WHERE id = ANY(%s)",
            [ids],
        ).fetchall()
        allocated_on = Counter(
            row[0].rsplit("→ ", 1)[-1]
            for row in db.execute(
                "SELECT event->>'detail' FROM invocations_invocation, jsonb_array_elements(trace) AS event "
                "WHERE event->>'kind' = 'allocate_rpc' AND id = ANY(%s)",
                [ids],
            )
        )
    assert statuses == {"succeeded": 50}
    assert len(traces) == 50
    assert all(count == last and first == 1 and count >= 10 for _, count, first, last in traces)
    # Seats were leased from both supervisors of the runtime (kept seats then serve without a call).
    supervisors = [f"127.0.0.1:{port}" for port in cluster.supervisor_ports_of("python")]
    assert set(allocated_on) == set(supervisors), allocated_on


def test_the_gateways_recover_when_postgresql_drops_their_connections(cluster):
    """A PostgreSQL restart or failover closes every connection; the next requests must not fail
    (the invocation edge reads outside Django's request cycle: platform_core/db.py)."""
    database = cluster.env["DATABASE_URL"].rsplit("/", 1)[-1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s", [database]
        ).fetchone()[0]
    assert dropped >= 2  # at least each gateway's
    time.sleep(1.5)  # the API key and registry caches expire: both are read from the database again
    for index in (0, 1, 0, 1):
        with cluster.gateway_client(index) as client:
            response = client.post("/api/v1/calculate/subtract", json={"operand1": 9, "operand2": 4})
            assert response.status_code == 200, response.text
            assert client.get(f"/api/v1/invocations/{response.json()['invocation_id']}").status_code == 200


def test_requests_keep_succeeding_when_one_of_two_supervisors_is_killed(production_env):
    cluster = Cluster(extra_env=production_env, gateways=1).start()
    try:
        cluster.add_plugin_variant(
            "subtract_numbers", "subtract_failover", mode="pooled", min_idle=1, max_workers=2, max_concurrency=4
        )
        killed_port = cluster.supervisor_ports_of("python")[1]
        results: list[tuple[float, float, int, str]] = []
        load_until = [math.inf]  # set once the supervisor is killed

        async def load() -> None:
            async with httpx.AsyncClient(base_url=cluster.url, headers=_auth(cluster), timeout=60) as client:
                while time.monotonic() < load_until[0]:
                    started = time.monotonic()
                    response = await client.post(
                        "/api/v1/plugins/subtract_failover/invoke", json={"operand1": 3, "operand2": 2}
                    )
                    error = response.json().get("error", {}).get("code", "") if response.status_code != 200 else ""
                    results.append((started, time.monotonic(), response.status_code, error))

        async def scenario() -> float:
            clients = [asyncio.create_task(load()) for _ in range(2)]
            await wait_until(lambda: len(results) >= 10, what="ten answers under load before the kill", timeout_s=30)
            killed_at = time.monotonic()
            cluster.stop_process(cluster.supervisor_process("python", 1), signal.SIGKILL)
            load_until[0] = killed_at + 4.0
            await asyncio.gather(*clients)
            return killed_at

        killed_at = asyncio.run(scenario())
        # The gateway learns of a SIGKILL when the connections break (a few ms; more on a loaded
        # machine): a request that starts in that moment is one in flight at the kill.
        noticed = killed_at + 0.5
        before = [r for r in results if r[1] < killed_at]
        after = [r for r in results if r[0] > noticed]
        straddling = [r for r in results if r[0] <= noticed and r[1] >= killed_at]
        assert before and all(r[2] == 200 for r in before)
        # Started after the kill: every one succeeds, on the other supervisor.
        assert len(after) >= 10 and all(r[2] == 200 for r in after), Counter((r[2], r[3]) for r in after)
        # In flight at the kill: its worker may have died with the supervisor (never retried
        # elsewhere: the plugin may have done part of its work).
        assert all(r[2] == 200 or r[3] in {"worker_lost", "supervisor_unavailable"} for r in straddling), straddling

        with cluster.client() as client:
            # A fresh worker per request (ephemeral) also comes from the survivor.
            for _ in range(3):
                response = client.post("/api/v1/calculate/subtract", json={"operand1": 5, "operand2": 3})
                assert response.status_code == 200, response.text
            boards = {s["address"]: s for s in client.get("/api/v1/workers").json()["supervisors"]}
        assert boards[f"127.0.0.1:{killed_port}"]["up"] is False
        assert boards[f"127.0.0.1:{cluster.supervisor_ports_of('python')[0]}"]["up"] is True
    finally:
        cluster.stop()
    assert not cluster.leftover_workers(), "the killed supervisor's workers survived it"


def test_a_tenants_rate_is_shared_by_both_gateways_through_redis(cluster):
    """Issue 11, item 13, over HTTP: a burst of 2 is 2 calls across both gateways, not 2 on each."""
    cluster.manage(
        "shell",
        "-c",
        "from platform_core.tenancy.models import Tenant; Tenant.objects.create(slug='duo', rate_per_s=1e-3, burst=2)",
    )
    key = cluster.create_api_key("duo")
    body = {"operand1": "not a number", "operand2": 1}  # refused by the schema: admitted, no worker needed
    with cluster.gateway_client(0, api_key=key) as a, cluster.gateway_client(1, api_key=key) as b:
        answers = [client.post("/api/v1/calculate/subtract", json=body) for client in (a, b, a, b)]
    assert [r.status_code for r in answers] == [400, 400, 429, 429], [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers[2:]} == {"rate_limited"}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in answers[2:])

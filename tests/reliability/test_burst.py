"""A burst of 300 concurrent invocations from two tenants against a real platform.

What may happen under a burst: success, 429 (a tenant over its concurrency quota) or 503 (no
free worker slot, a worker that could not be reached in time), both with Retry-After — never
another 5xx, never ``worker_lost`` for a worker
that did not die, and every answered invocation is recorded. Nothing is left running after.
"""

from __future__ import annotations

import asyncio
import collections

import httpx
import pytest

from tests.support.platform import pids_using, wait_for

pytestmark = pytest.mark.e2e

BURST = 300


async def _burst(platform, keys: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=platform.url, timeout=120, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            return await client.post(
                "/api/v1/calculate/subtract",
                json={"operand1": i, "operand2": 1},
                headers={"Authorization": f"Bearer {keys[i % len(keys)]}"},
            )

        return await asyncio.gather(*(one(i) for i in range(BURST)))


def test_a_burst_of_300_from_two_tenants_gets_successes_429s_or_503s_every_answer_recorded_nothing_left(
    reliability_platform, rapi
):
    keys = [reliability_platform.create_api_key("burst-a"), reliability_platform.create_api_key("burst-b")]
    workers_dir = reliability_platform.socket_root / reliability_platform.supervisor_id("python")
    before = set(pids_using(str(workers_dir)))
    answers = asyncio.run(_burst(reliability_platform, keys))
    codes = collections.Counter(
        (a.status_code, a.json()["error"]["code"] if a.status_code != 200 else "") for a in answers
    )
    print(f"burst of {BURST}, two tenants: {dict(codes)}")
    assert codes[(200, "")] > 0, codes
    overload = {(503, "no_capacity"), (503, "worker_unreachable"), (429, "too_many_concurrent")}
    assert set(codes) <= {(200, ""), *overload}, codes
    for answer in answers:
        if answer.status_code != 200:
            assert int(answer.headers["Retry-After"]) >= 1
        else:
            assert answer.json()["result"] == answer.json()["operand1"] - 1
    for answer in answers:
        stored = rapi.get(f"/api/v1/invocations/{answer.json()['invocation_id']}")
        assert stored.status_code == 200 and stored.json()["http_status"] == answer.status_code
    tenants = collections.Counter(
        rapi.get(f"/api/v1/invocations/{a.json()['invocation_id']}").json()["tenant_id"] for a in answers
    )
    assert tenants == {"burst-a": BURST // 2, "burst-b": BURST // 2}
    assert not [a for a in answers if a.status_code >= 500 and a.status_code != 503], "only 503 among the 5xx"
    assert not [a for a in answers if a.status_code != 200 and a.json()["error"]["code"] == "worker_lost"]

    # Nothing is left: no worker listed, no worker process, no worker's socket directory.
    def listed() -> list[dict]:
        return [w for s in rapi.get("/api/v1/workers").json()["supervisors"] for w in s["workers"]]

    wait_for(lambda: not listed(), what="every worker of the burst was removed", timeout_s=30, every_s=0.2)
    wait_for(lambda: not any(workers_dir.iterdir()), what="no socket directory left", timeout_s=10)
    # What runs before the burst stays (the zygote: a forked worker keeps its command line); nothing else.
    assert set(pids_using(str(workers_dir))) <= before, "worker processes outlived the burst"

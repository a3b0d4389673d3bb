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


def test_a_burst_of_300_gets_successes_or_503s_and_every_answer_is_recorded(reliability_platform, rapi):
    keys = [reliability_platform.create_api_key("burst-a"), reliability_platform.create_api_key("burst-b")]
    answers = asyncio.run(_burst(reliability_platform, keys))
    codes = collections.Counter(
        (a.status_code, a.json()["error"]["code"] if a.status_code != 200 else "") for a in answers
    )
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

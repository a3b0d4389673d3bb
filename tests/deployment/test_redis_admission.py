"""Tenant quotas shared by every gateway through Redis (REDIS_URL): two admissions, one quota."""

from __future__ import annotations

import asyncio

import pytest

from platform_core.tenancy.admission import RedisAdmission, Refused
from platform_core.tenancy.callers import Caller, TenantLimits
from tests.support.services import REDIS_URL, redis_prefix
from tests.support.waits import wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def prefix(production_services):
    with redis_prefix() as prefix:
        yield prefix


async def test_two_gateways_share_a_tenants_concurrency_quota(prefix):
    one, two = (RedisAdmission(REDIS_URL, prefix=prefix, slot_ttl_s=60) for _ in range(2))
    caller = Caller(tenant_id="acme", limits=TenantLimits(rate_per_s=1000, burst=1000, max_concurrent=2))
    first = await one.enter(caller)
    await two.enter(caller)
    with pytest.raises(Refused) as refused:
        await one.enter(caller)
    assert refused.value.code == "too_many_concurrent"
    first.leave()

    async def slot_free_on_two() -> bool:  # leave() gives the slot back in the background
        try:
            await two.enter(caller)
        except Refused:
            return False
        return True

    await wait_until(slot_free_on_two, what="the slot given back on one gateway free on the other", timeout_s=5)
    other = Caller(tenant_id="globex", limits=caller.limits)
    await one.enter(other)  # another tenant's quota is its own


async def test_two_gateways_share_a_tenants_rate(prefix):
    one, two = (RedisAdmission(REDIS_URL, prefix=prefix, slot_ttl_s=60) for _ in range(2))
    caller = Caller(tenant_id="acme", limits=TenantLimits(rate_per_s=0.5, burst=2, max_concurrent=100))
    (await one.enter(caller)).leave()
    (await two.enter(caller)).leave()
    with pytest.raises(Refused) as refused:
        await one.enter(caller)
    assert refused.value.code == "rate_limited" and refused.value.retry_after == 2


async def test_a_gateway_that_died_holds_its_slots_only_until_they_expire(prefix):
    dead, alive = (
        RedisAdmission(REDIS_URL, prefix=prefix, slot_ttl_s=0.3),
        RedisAdmission(REDIS_URL, prefix=prefix, slot_ttl_s=60),
    )
    caller = Caller(tenant_id="acme", limits=TenantLimits(rate_per_s=1000, burst=1000, max_concurrent=1))
    await dead.enter(caller)  # never left: its gateway died
    with pytest.raises(Refused):
        await alive.enter(caller)
    await asyncio.sleep(0.4)
    await alive.enter(caller)

"""The production topology under test: PostgreSQL and Redis of the machine, used for real.

Tests marked ``postgres`` skip where the services do not answer, except in CI (``CI=true``),
where they fail: ``.ci/run`` starts both.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from tests.support.cluster import Cluster
from tests.support.services import REDIS_URL, fresh_postgres_database, redis_prefix, services_missing


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI must run the PostgreSQL + Redis suite, but: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def production_services() -> None:
    if why := services_missing():
        unavailable(f"PostgreSQL and Redis are needed: {why} (see docs/DEPLOYMENT.md, Tests)")


@pytest.fixture(scope="session")
def production_env(production_services) -> dict[str, str]:
    """Environment of a platform on a fresh database of its own and a Redis prefix of its own."""
    with fresh_postgres_database() as database_url, redis_prefix() as prefix:
        yield {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix}


@pytest.fixture(scope="session")
def cluster(production_env) -> Cluster:
    """Two gateways and two python supervisors sharing PostgreSQL and Redis."""
    # Short key cache: the reconnection test waits for it to expire.
    running = Cluster(extra_env={**production_env, "API_KEY_CACHE_TTL_S": "1"}).start()
    try:
        running.add_plugin_variant(
            "subtract_numbers",
            "subtract_pooled",
            mode="pooled",
            min_idle=1,
            max_workers=2,
            max_concurrency=8,
            queue_timeout_s=20.0,
        )
        yield running
    finally:
        running.stop()
    assert not running.leftover_workers(), "worker processes survived their supervisors"

"""A platform for the reliability tests (hostile plugins, faults), with the hostile plugins registered.

Tests that kill the gateway or the supervisor start platforms of their own (``fresh_platform``).
"""

from __future__ import annotations

import pytest

from tests.reliability.hostile import register_hostile
from tests.support.platform import Platform

# Short enough for the never-ready test, long enough for a cold start on a busy 2-core machine.
ALLOCATION_TIMEOUT_S = "6"


@pytest.fixture(scope="session")
def reliability_platform():
    platform = Platform(extra_env={"ALLOCATION_TIMEOUT_S": ALLOCATION_TIMEOUT_S}).start()
    register_hostile(platform)
    yield platform
    platform.stop()
    leftovers = platform.leftover_workers()
    assert not leftovers, f"worker processes survived their supervisor: {leftovers}"


@pytest.fixture
def rapi(reliability_platform):
    with reliability_platform.client() as client:
        yield client


@pytest.fixture
def fresh_platform():
    """A platform of the test's own, for tests that kill parts of it."""
    platforms: list[Platform] = []

    def start(**kwargs) -> Platform:
        platform = Platform(**kwargs).start()
        platforms.append(platform)
        return platform

    yield start
    for platform in platforms:
        platform.stop()
        leftovers = platform.leftover_workers()
        assert not leftovers, f"worker processes survived their supervisor: {leftovers}"

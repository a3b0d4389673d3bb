"""A platform for the programs-and-agents tests (issue 16): Python and Java supervisors."""

from __future__ import annotations

import shutil

import pytest

from tests.support.platform import Platform


@pytest.fixture(scope="session")
def programs_platform():
    runtimes = ("python", *(r for r, tool in (("java", "java"), ("node", "node")) if shutil.which(tool)))
    platform = Platform(runtimes=runtimes, absent_runtimes=tuple({"java", "node"} - set(runtimes))).start()
    yield platform
    platform.stop()
    leftovers = platform.leftover_workers()
    assert not leftovers, f"worker processes survived their supervisor: {leftovers}"


@pytest.fixture
def papi(programs_platform):
    with programs_platform.client() as client:
        yield client
